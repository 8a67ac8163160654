//! Text that goes into generated SQL: identifiers, literals, comments and
//! dollar-quoted bodies, each rendered so that what it holds stays data.
//!
//! Free text of the policy (descriptions, reasons, tenant and environment
//! values, sensitive keys, file names) may contain anything: newlines,
//! quotes, `*/`, `$$`, SQL. Here is where it becomes SQL text, and nowhere
//! else:
//!
//! * [`ident`] and [`lit`] quote through sea-query; [`lit`] also writes
//!   characters that could make a reviewer misread the line (bidirectional
//!   overrides, zero-width and line-separator characters) as `\uXXXX`
//!   escapes, so the SQL a DBA reads is the SQL that runs;
//! * [`comment`] makes text safe inside a `--` line comment: PostgreSQL ends
//!   such a comment only at a newline or carriage return, so those (and
//!   every other control or invisible character) are written as escapes;
//! * [`dollar_quoted`] picks a dollar-quote tag the body does not contain, so
//!   no literal inside a function body can end the body.
//!
//! Pure functions, no I/O.

use sea_query::{Alias, IntoIden, PostgresQueryBuilder, QueryBuilder, QuotedBuilder, Value};

/// A quoted identifier: `"app"`, `"we""ird"`.
pub fn ident(name: &str) -> String {
    let mut s = String::new();
    PostgresQueryBuilder.prepare_iden(&Alias::new(name).into_iden(), &mut s);
    s
}

/// Characters written as escapes wherever free text is shown: controls
/// (including newline, carriage return, tab and the C1 range), line and
/// paragraph separators, bidirectional controls, zero-width characters and
/// the byte-order mark. In a literal they keep their value; in a comment,
/// they cannot end it or disguise the line.
fn disguising(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// A quoted string literal: `'bot-42'`, `E'it\'s'`, `E'two\nlines'`.
/// The value PostgreSQL reads is exactly `text`. (PostgreSQL text cannot
/// hold NUL; the policy check refuses it before anything is rendered.)
pub fn lit(text: &str) -> String {
    let quoted = PostgresQueryBuilder.value_to_string(&Value::String(Some(text.to_string())));
    if !quoted.chars().any(|c| disguising(c) && !c.is_ascii()) {
        return quoted;
    }
    // sea-query escapes ASCII controls; the other disguising characters it
    // leaves as they are. In an E'' string, `\uXXXX` is the character.
    let body = quoted
        .strip_prefix("E'")
        .or_else(|| quoted.strip_prefix('\''))
        .and_then(|b| b.strip_suffix('\''))
        .unwrap_or(&quoted);
    let mut out = String::from("E'");
    for c in body.chars() {
        if disguising(c) && !c.is_ascii() {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Free text made safe for a `--` comment: the same text, with every
/// character that could end the comment or disguise the line written as
/// `\u{XXXX}` (a newline is `\u{000A}`). The exact value is in the literal
/// the statement uses.
pub fn comment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if disguising(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// `body` between dollar quotes whose tag (`$tag$`, else `$tag1$`,
/// `$tag2$`, …) does not occur in it, so nothing inside can end it.
pub fn dollar_quoted(tag: &str, body: &str) -> String {
    let mut n = 0usize;
    loop {
        let t = if n == 0 {
            format!("${tag}$")
        } else {
            format!("${tag}{n}$")
        };
        if !body.contains(&t) {
            return format!("{t}{body}{t}");
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_cannot_be_ended() {
        assert_eq!(comment("a\nDROP TABLE x;"), "a\\u{000A}DROP TABLE x;");
        assert_eq!(comment("a\rb"), "a\\u{000D}b");
        assert_eq!(comment("a\u{2028}b"), "a\\u{2028}b");
        assert_eq!(comment("rtl \u{202E}x"), "rtl \\u{202E}x");
        assert_eq!(comment("*/ $$ ' \" --"), "*/ $$ ' \" --");
    }

    #[test]
    fn literals_keep_their_value_and_show_what_they_hold() {
        assert_eq!(lit("bot-42"), "'bot-42'");
        assert_eq!(lit("it's"), "E'it\\'s'");
        assert_eq!(lit("a\nb"), "E'a\\nb'");
        assert_eq!(lit("x\u{202E}y"), "E'x\\u202Ey'");
        assert_eq!(lit("q'\u{2028}"), "E'q\\'\\u2028'");
    }

    #[test]
    fn dollar_tags_are_not_in_the_body() {
        assert_eq!(dollar_quoted("body", "SELECT 1"), "$body$SELECT 1$body$");
        assert_eq!(
            dollar_quoted("body", "x $body$ y"),
            "$body1$x $body$ y$body1$"
        );
        assert_eq!(
            dollar_quoted("body", "$body$ $body1$"),
            "$body2$$body$ $body1$$body2$"
        );
    }
}
