//! Column definitions (`text not null`, `timestamptz not null default now()`):
//! a small, closed grammar, so that nothing but a type and well-known
//! constraints can reach the generated `CREATE TABLE`. Anything else (a
//! second statement, a comment, an arbitrary expression) is an error.
//! No I/O here.

use crate::model::ColumnType;

/// Base types accepted, as (spelling in words, canonical name, takes modifiers).
const TYPES: &[(&[&str], &str, bool)] = &[
    (&["timestamp", "with", "time", "zone"], "timestamptz", false),
    (
        &["timestamp", "without", "time", "zone"],
        "timestamp",
        false,
    ),
    (&["timestamptz"], "timestamptz", false),
    (&["timestamp"], "timestamp", false),
    (&["double", "precision"], "double precision", false),
    (&["character", "varying"], "varchar", true),
    (&["bigint"], "bigint", false),
    (&["int8"], "bigint", false),
    (&["integer"], "integer", false),
    (&["int4"], "integer", false),
    (&["int"], "integer", false),
    (&["smallint"], "smallint", false),
    (&["int2"], "smallint", false),
    (&["bigserial"], "bigserial", false),
    (&["serial"], "serial", false),
    (&["text"], "text", false),
    (&["varchar"], "varchar", true),
    (&["char"], "char", true),
    (&["character"], "char", true),
    (&["uuid"], "uuid", false),
    (&["boolean"], "boolean", false),
    (&["bool"], "boolean", false),
    (&["jsonb"], "jsonb", false),
    (&["json"], "json", false),
    (&["date"], "date", false),
    (&["interval"], "interval", false),
    (&["numeric"], "numeric", true),
    (&["decimal"], "numeric", true),
    (&["real"], "real", false),
    (&["bytea"], "bytea", false),
    (&["inet"], "inet", false),
    (&["cidr"], "cidr", false),
];

/// Functions accepted as defaults (no arguments).
const DEFAULT_FUNCTIONS: &[&str] = &[
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "gen_random_uuid",
];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Number(String),
    Str(String),
    Punct(char),
    Cast,
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Tok::Word(
                chars[start..i]
                    .iter()
                    .collect::<String>()
                    .to_ascii_lowercase(),
            ));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            toks.push(Tok::Number(chars[start..i].iter().collect()));
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("has an unterminated string literal".into()),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        s.push(*ch);
                        i += 1;
                    }
                }
            }
            toks.push(Tok::Str(s));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            toks.push(Tok::Cast);
            i += 2;
        } else if "(),[]".contains(c) {
            toks.push(Tok::Punct(c));
            i += 1;
        } else {
            return Err(format!("contains `{c}`, which no column definition needs"));
        }
    }
    Ok(toks)
}

/// The hint for every column definition error.
pub const COLUMN_HELP: &str = "write a type and optional constraints, e.g. `text not null`, `timestamptz not null default now()`, `bigint generated always as identity`, `jsonb`";

/// Parse a column definition.
pub fn parse(text: &str) -> Result<ColumnType, String> {
    let toks = tokenize(text)?;
    let mut p = 0;
    let (sql_type, used) = parse_type(&toks)?;
    p += used;
    let mut col = ColumnType {
        sql_type,
        not_null: false,
        default: None,
        identity: None,
    };
    let mut nullable_given = false;
    while p < toks.len() {
        match &toks[p] {
            Tok::Word(w) if w == "not" && toks.get(p + 1) == Some(&Tok::Word("null".into())) => {
                if nullable_given {
                    return Err("says both `null` and `not null`".into());
                }
                col.not_null = true;
                nullable_given = true;
                p += 2;
            }
            Tok::Word(w) if w == "null" => {
                if nullable_given {
                    return Err("says both `null` and `not null`".into());
                }
                nullable_given = true;
                p += 1;
            }
            Tok::Word(w) if w == "default" => {
                if col.default.is_some() {
                    return Err("has two defaults".into());
                }
                let (expr, used) = parse_default(&toks[p + 1..])?;
                col.default = Some(expr);
                p += 1 + used;
            }
            Tok::Word(w) if w == "generated" => {
                let words: Vec<String> = toks[p + 1..]
                    .iter()
                    .take(4)
                    .map(|t| match t {
                        Tok::Word(w) => w.clone(),
                        _ => String::new(),
                    })
                    .collect();
                let kind = if words.len() >= 3 && words[0] == "always" && words[1] == "as" && words[2] == "identity" {
                    p += 4;
                    "always"
                } else if words.len() >= 4
                    && words[0] == "by"
                    && words[1] == "default"
                    && words[2] == "as"
                    && words[3] == "identity"
                {
                    p += 5;
                    "by default"
                } else {
                    return Err("supports only `generated always as identity` or `generated by default as identity`".into());
                };
                if !matches!(col.sql_type.as_str(), "bigint" | "integer" | "smallint") {
                    return Err("makes an identity of a type that is not an integer".into());
                }
                col.identity = Some(kind.to_string());
                col.not_null = true;
                nullable_given = true;
            }
            Tok::Word(w) if w == "primary" || w == "unique" => {
                return Err(format!("declares `{w}`: a unique key of a partitioned table must include the time column, and pgretain declares no keys; add the index in a migration of your own if you need one"));
            }
            Tok::Word(w) if w == "references" || w == "check" || w == "collate" || w == "constraint" => {
                return Err(format!("uses `{w}`, which pgretain does not support in a column definition"));
            }
            other => return Err(format!("has `{}` where a constraint (`not null`, `default …`, `generated … as identity`) was expected", show(other))),
        }
    }
    if col.identity.is_some() && col.default.is_some() {
        return Err("has both an identity and a default".into());
    }
    Ok(col)
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Word(w) | Tok::Number(w) => w.clone(),
        Tok::Str(s) => format!("'{s}'"),
        Tok::Punct(c) => c.to_string(),
        Tok::Cast => "::".into(),
    }
}

/// A type: known words, optional `(n)` / `(p, s)` modifiers, optional `[]`.
fn parse_type(toks: &[Tok]) -> Result<(String, usize), String> {
    let words: Vec<&str> = toks
        .iter()
        .map_while(|t| match t {
            Tok::Word(w) => Some(w.as_str()),
            _ => None,
        })
        .collect();
    let Some((spelling, canonical, modifiers)) = TYPES
        .iter()
        .find(|(sp, _, _)| words.len() >= sp.len() && words[..sp.len()] == **sp)
    else {
        return Err(match words.first() {
            Some(w) => format!("has an unknown or unsupported type `{w}`"),
            None => "does not start with a type".into(),
        });
    };
    let mut p = spelling.len();
    let mut ty = canonical.to_string();
    if toks.get(p) == Some(&Tok::Punct('(')) {
        if !modifiers {
            return Err(format!("gives `{canonical}` a modifier it does not take"));
        }
        let mut args = Vec::new();
        p += 1;
        loop {
            match toks.get(p) {
                Some(Tok::Number(n)) if n.chars().all(|c| c.is_ascii_digit()) => {
                    args.push(n.clone())
                }
                _ => {
                    return Err(format!(
                        "has a bad modifier for `{canonical}`; write e.g. `{canonical}(64)`"
                    ))
                }
            }
            p += 1;
            match toks.get(p) {
                Some(Tok::Punct(',')) if args.len() < 2 => p += 1,
                Some(Tok::Punct(')')) => {
                    p += 1;
                    break;
                }
                _ => {
                    return Err(format!(
                        "has a bad modifier for `{canonical}`; write e.g. `{canonical}(64)`"
                    ))
                }
            }
        }
        ty = format!("{ty}({})", args.join(","));
    }
    if toks.get(p) == Some(&Tok::Punct('[')) && toks.get(p + 1) == Some(&Tok::Punct(']')) {
        ty.push_str("[]");
        p += 2;
    }
    Ok((ty, p))
}

/// A default: a literal (optionally cast), `true`/`false`/`null`,
/// `current_timestamp` / `current_date`, or a known function with no arguments.
fn parse_default(toks: &[Tok]) -> Result<(String, usize), String> {
    let mut p = 0;
    let mut expr = match toks.first() {
        Some(Tok::Number(n)) => {
            p += 1;
            n.clone()
        }
        Some(Tok::Str(s)) => {
            p += 1;
            format!("'{}'", s.replace('\'', "''"))
        }
        Some(Tok::Word(w)) if matches!(w.as_str(), "true" | "false" | "null" | "current_timestamp" | "current_date") => {
            p += 1;
            w.clone()
        }
        Some(Tok::Word(w)) if DEFAULT_FUNCTIONS.contains(&w.as_str()) => {
            if toks.get(1) != Some(&Tok::Punct('(')) || toks.get(2) != Some(&Tok::Punct(')')) {
                return Err(format!("calls `{w}` with arguments; write `{w}()`"));
            }
            p += 3;
            format!("{w}()")
        }
        Some(other) => {
            return Err(format!(
                "has a default `{}` pgretain does not accept; use a literal, `now()`, `current_timestamp` or `gen_random_uuid()`",
                show(other)
            ))
        }
        None => return Err("has `default` without a value".into()),
    };
    if toks.get(p) == Some(&Tok::Cast) {
        let (ty, used) = parse_type(&toks[p + 1..])?;
        expr = format!("{expr}::{ty}");
        p += 1 + used;
    }
    Ok((expr, p))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn normalises_definitions() {
        let c = parse("timestamp with time zone NOT NULL default now()").unwrap();
        assert_eq!(c.sql(), "timestamptz not null default now()");
        assert!(c.is_timestamptz());
        assert_eq!(
            parse("bigint generated always as identity").unwrap().sql(),
            "bigint generated always as identity not null"
        );
        assert_eq!(parse("varchar(64)").unwrap().sql(), "varchar(64)");
        assert_eq!(
            parse("jsonb default '{}'::jsonb").unwrap().sql(),
            "jsonb default '{}'::jsonb"
        );
        assert_eq!(
            parse("text default 'it''s'").unwrap().sql(),
            "text default 'it''s'"
        );
        assert_eq!(parse("text[]").unwrap().sql(), "text[]");
    }

    #[test]
    fn rejects_smuggled_sql() {
        for bad in [
            "text; drop table x",
            "text default now(); drop table users --",
            "text -- comment",
            "text default (select 1)",
            "text primary key",
            "tex",
            "text not null null",
            "text default pg_sleep(10)",
            "integer(5)",
            "text default 'unterminated",
            "text generated always as (1) stored",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
