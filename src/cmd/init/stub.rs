//! The YAML of `pgretain init`'s stub: one policy file holding a dataset
//! per guessed table, each guess with a comment saying why. Pure and
//! deterministic: the same guesses give the same bytes.
//!
//! Text from the database (the table's comment, names, type names) is
//! data: in a value it is written as a plain scalar only when it reads
//! back as the same string, else double-quoted with every quote,
//! backslash, line break and invisible character escaped ([`scalar`]); in a
//! comment, line breaks and invisible characters are written as escapes
//! (`render::text::comment`), so nothing can end the comment and start a key.

use crate::db::introspect::ClockType;
use crate::render::text::comment;

use super::guess::{clock_words, Guess, ENVIRONMENT_NAMES, TENANT_NAMES};

/// The stub for `entries` (dataset name, guess), read from database `database`.
pub fn render(database: &str, entries: &[(String, Guess)]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# Policy stub written by `pgretain init` from database `{}`.\n",
        comment(database)
    ));
    out.push_str(
        "# Every value below is a guess from the table's shape (column names, types,\n\
         # NOT NULL, keys), with the reason in the comment above it: review each one\n\
         # before you compile. `description` and `keep` are placeholders for the\n\
         # data's owner to decide.\n",
    );
    out.push_str("version: 1\ndatasets:\n");
    for (i, (name, g)) in entries.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        dataset(&mut out, name, g);
    }
    out
}

fn dataset(out: &mut String, name: &str, g: &Guess) {
    let line = |out: &mut String, text: &str| {
        out.push_str("    ");
        out.push_str(text);
        out.push('\n');
    };
    out.push_str(&format!("  {}:\n", scalar(name)));
    match &g.comment {
        Some(_) => line(
            out,
            "# From the table's comment: say what the data is in words an auditor understands.",
        ),
        None => line(
            out,
            "# TODO: the table has no comment; say in a sentence what the data is (reports show it).",
        ),
    }
    line(out, &format!("description: {}", scalar(g.description())));
    line(
        out,
        "# No `columns`: the table exists, and pgretain adopts it in place.",
    );
    line(out, &format!("table: {}", scalar(&g.table)));

    let t = &g.time;
    let null = if t.not_null { "NOT NULL" } else { "nullable" };
    line(
        out,
        &format!(
            "# Guessed: {} is a {null} {} column, {}.",
            comment(&t.column),
            clock_words(t.clock),
            comment(&t.why)
        ),
    );
    if !t.others.is_empty() {
        line(
            out,
            &format!("# Other candidates: {}.", comment(&t.others.join(", "))),
        );
    }
    if !t.unusable.is_empty() {
        line(
            out,
            &format!(
                "# Not usable (names that need quoting): {}.",
                comment(&t.unusable.join(", "))
            ),
        );
    }
    if let Some(a) = &g.activity {
        line(
            out,
            &format!(
                "# The seed's sessions expire after their last activity: for that, write `time: {}` and `sliding: true`.",
                comment(a)
            ),
        );
    }
    line(out, &format!("time: {}", scalar(&t.column)));
    match t.clock {
        ClockType::Timestamptz => {}
        ClockType::Timestamp => {
            line(out, "# timestamp values are read as wall times in this zone; Rails, Django and Prisma write UTC.");
            line(out, "time_zone: UTC");
        }
        ClockType::Date => {
            line(out, "# date values are read as midnight in this zone; Rails, Django and Prisma write UTC.");
            line(out, "time_zone: UTC");
        }
    }

    named(
        out,
        "tenant",
        g.tenant.as_ref(),
        TENANT_NAMES,
        "whose data a row is, to allow per-tenant retention and holds",
    );
    named(
        out,
        "environment",
        g.environment.as_ref(),
        ENVIRONMENT_NAMES,
        "the environment of a row (e.g. draft or live), to allow per-environment retention",
    );

    if g.sessions {
        line(out, "# The seed's default for sessions (the table's name says sessions); decide the real retention.");
    } else {
        line(
            out,
            "# The seed's default for data other than sessions; decide the real retention.",
        );
    }
    line(out, &format!("keep: {}", g.keep()));

    if !g.keys_without_time.is_empty() {
        let (keys, verb) = match g.keys_without_time.as_slice() {
            [one] => (one.clone(), "does"),
            [rest @ .., last] => (format!("{} and {last}", rest.join(", ")), "do"),
            [] => (String::new(), "does"),
        };
        line(
            out,
            &format!(
                "# unique_keys: include_time   # {} {verb} not include {}; adoption refuses it unless you allow pgretain to extend it by the clock",
                comment(&keys),
                comment(&t.column)
            ),
        );
    }
}

/// A tenant or environment line, or a comment saying none was found.
fn named(
    out: &mut String,
    key: &str,
    found: Option<&super::guess::Named>,
    names: &[&str],
    purpose: &str,
) {
    match found {
        Some(n) => {
            let null = if n.not_null {
                "NOT NULL"
            } else {
                "may be NULL"
            };
            out.push_str(&format!(
                "    # Guessed from its name: {} ({}, {null}).",
                comment(&n.column),
                comment(&n.sql_type)
            ));
            if !n.others.is_empty() {
                out.push_str(&format!(
                    " Other candidates: {}.",
                    comment(&n.others.join(", "))
                ));
            }
            out.push('\n');
            out.push_str(&format!("    {key}: {}\n", scalar(&n.column)));
        }
        None => {
            let list = if names.len() > 4 {
                format!("{}, …", names[..4].join(", "))
            } else {
                names.join(" or ")
            };
            out.push_str(&format!(
                "    # {key}: none guessed (no column named {list}); name the column saying {purpose}.\n"
            ));
        }
    }
}

/// A YAML scalar holding exactly `s`: plain when it is simple text that
/// reads back as the same string, else double-quoted with escapes.
pub fn scalar(s: &str) -> String {
    let simple = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && !s.ends_with(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.,()/-".contains(c));
    let reads_back = || {
        matches!(serde_yaml::from_str::<serde_yaml::Value>(s),
            Ok(serde_yaml::Value::String(back)) if back == s)
    };
    // Words YAML 1.1 readers take for booleans or null: quoted for them.
    let yaml11 = matches!(
        s.to_ascii_lowercase().as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
    );
    if simple && !yaml11 && reads_back() {
        s.to_string()
    } else {
        double_quoted(s)
    }
}

/// `"…"` with `"` and `\` escaped, and every character that could break a
/// line (for YAML 1.1 that includes NEL, LS and PS), hide or disguise
/// text, or is not printable in YAML, written as an escape.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if escaped(c) => {
                let n = c as u32;
                if n <= 0xFFFF {
                    out.push_str(&format!("\\u{n:04X}"));
                } else {
                    out.push_str(&format!("\\U{n:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFFE}'
                | '\u{FFFF}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that could end a scalar, start a key or a document, or read as
    /// another type.
    const NASTY: &[&str] = &[
        "Chat messages",
        "TODO: what this data is",
        "line one\nkey: injected\n  nested: x",
        "a # not a comment",
        "#starts with a hash",
        "quotes ' and \" and \\ backslash",
        "---",
        "...",
        "- item",
        "[a, b]",
        "{a: 1}",
        "&anchor *alias !tag",
        "%YAML 1.2",
        "@at",
        "`tick",
        "yes",
        "no",
        "on",
        "null",
        "~",
        "true",
        "1.5",
        "0x1F",
        "2026-01-01",
        " leading space",
        "trailing space ",
        "",
        "\t",
        "\r\n",
        "nel\u{85}ls\u{2028}ps\u{2029}",
        "\u{feff}bom",
        "rtl \u{202e}override",
        "zero\u{200b}width",
        "emoji 🦀 and é",
        "bell\u{7}",
        "ends with colon:",
        "key: value",
        "|",
        ">-",
        "? x",
    ];

    #[test]
    fn every_scalar_reads_back_as_the_same_string_on_one_line() {
        for s in NASTY {
            let y = scalar(s);
            assert!(!y.contains('\n') && !y.contains('\r'), "{y}");
            let doc = format!("k: {y}\n");
            let back: serde_yaml::Value = serde_yaml::from_str(&doc).unwrap();
            assert_eq!(
                back.get("k").and_then(|v| v.as_str()),
                Some(*s),
                "{s:?} → {y}"
            );
        }
        assert_eq!(scalar("Chat messages"), "Chat messages");
        assert_eq!(scalar("yes"), "\"yes\""); // a boolean to YAML 1.1 readers
        assert_eq!(scalar("true"), "\"true\"");
        assert_eq!(scalar("a: b"), "\"a: b\"");
    }
}
