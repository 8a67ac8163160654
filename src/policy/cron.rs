//! pg_cron schedules: the five-field cron syntax pg_cron 1.4 accepts (GMT),
//! and its `@daily`-style macros. (`N seconds` needs pg_cron 1.5 and is refused.)
//!
//! pg_cron has its own dialect (Vixie cron's fields, no seconds field), so
//! no general-purpose cron crate matches it; this is the small subset a
//! policy needs, checked before anything reaches the database.

/// The schedule used when a policy file sets none: daily at 03:30 GMT.
pub const DEFAULT_SCHEDULE: &str = "30 3 * * *";

const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// The `@name` macros pg_cron accepts.
const MACROS: [&str; 7] = [
    "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
];

const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Check a schedule; the error says which field is wrong and why.
pub fn validate(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Err("is empty".into());
    }
    if let Some(mac) = s.strip_prefix('@') {
        return if MACROS.contains(&mac) {
            Ok(())
        } else {
            Err(format!(
                "uses an unknown macro `@{mac}`; pg_cron knows {}",
                MACROS
                    .iter()
                    .map(|m| format!("`@{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
    }
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() == 2 && (parts[1] == "seconds" || parts[1] == "second") {
        // pg_cron 1.4 (Debian's postgresql-15-cron, SPEC §6) rejects
        // interval schedules ("invalid schedule: 10 seconds"); they arrived
        // in pg_cron 1.5. Refuse here rather than fail at apply.
        return Err("is an interval schedule, which pg_cron 1.4 does not support; use a five-field cron expression such as `* * * * *` (every minute)".into());
    }
    if parts.len() == 1 {
        let word = parts[0].to_ascii_lowercase();
        if MACROS.contains(&word.as_str()) {
            return Err(format!(
                "is not a cron expression; did you mean the macro `@{word}`?"
            ));
        }
    }
    if parts.len() != 5 {
        return Err(format!(
            "has {} field{}; pg_cron needs 5",
            parts.len(),
            if parts.len() == 1 { "" } else { "s" }
        ));
    }
    for (i, part) in parts.iter().enumerate() {
        let (name, lo, hi) = FIELDS[i];
        check_field(part, i, lo, hi)
            .map_err(|why| format!("has a bad {name} field `{part}`: {why}"))?;
    }
    Ok(())
}

fn check_field(field: &str, index: usize, lo: u32, hi: u32) -> Result<(), String> {
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (item, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n >= 1 && n <= hi => {}
                _ => return Err(format!("step `{step}` is not a number from 1 to {hi}")),
            }
        }
        if range == "*" {
            continue;
        }
        let (a, b) = match range.split_once('-') {
            Some((a, b)) => (a, Some(b)),
            None => (range, None),
        };
        let a = value(a, index, lo, hi)?;
        if let Some(b) = b {
            let b = value(b, index, lo, hi)?;
            if b < a {
                return Err(format!("range {a}-{b} runs backwards"));
            }
        }
    }
    Ok(())
}

fn value(text: &str, index: usize, lo: u32, hi: u32) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = match index {
        3 => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|p| p as u32 + 1),
        4 => DAYS.iter().position(|d| *d == lower).map(|p| p as u32),
        _ => None,
    };
    if let Some(v) = named {
        return Ok(v);
    }
    match text.parse::<u32>() {
        Ok(v) if v >= lo && v <= hi => Ok(v),
        Ok(v) => Err(format!("{v} is outside {lo}-{hi}")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_pg_cron_schedules() {
        for s in [
            "30 3 * * *",
            "*/5 * * * *",
            "0 0 1,15 * mon-fri",
            "0 12 * jan-mar 0",
            "@daily",
            "0-59/10 1-5 * * 7",
        ] {
            assert_eq!(validate(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn rejects_bad_schedules() {
        for s in [
            "",
            "daily",
            "60 3 * * *",
            "30 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "30 3 * *",
            "30 3 * * * *",
            "@sometimes",
            "90 seconds",
            "10 seconds",
        ] {
            assert!(validate(s).is_err(), "{s}");
        }
    }
}
