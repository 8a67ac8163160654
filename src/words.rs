//! Numbers, counts, durations and times for people: `1,204`, `3 rows`,
//! `25 h`, `2.7 years`, `8.0 kB`, `2026-05-01T03:30:00Z`, and the phrase
//! naming whom a rule covers. One place, so that every command says them
//! the same way. A leaf: it imports nothing of pgretain. No I/O here.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// `1204` → `1,204`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// `word`, or `word` + `s` unless `n` is 1: `row`, `rows`.
pub fn noun(n: i64, word: &str) -> String {
    format!("{word}{}", if n == 1 { "" } else { "s" })
}

/// `1 row`, `1,204 rows`.
pub fn plural(n: i64, word: &str) -> String {
    format!("{} {}", thousands(n), noun(n, word))
}

/// `a`, `a and b`, `a, b and c`.
pub fn join_words(parts: &[String]) -> String {
    match parts {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// "tenant bot-42, environment live", "tenant bot-42", "environment live";
/// `None` when a rule names neither (each caller says what that covers).
pub fn who(tenant: Option<&str>, environment: Option<&str>) -> Option<String> {
    match (tenant, environment) {
        (Some(t), Some(e)) => Some(format!("tenant {t}, environment {e}")),
        (Some(t), None) => Some(format!("tenant {t}")),
        (None, Some(e)) => Some(format!("environment {e}")),
        (None, None) => None,
    }
}

/// "24 h", "90 min", "17 days 3 h": a duration for people.
pub fn human_duration(d: TimeDelta) -> String {
    let s = d.num_seconds();
    if s < 120 {
        format!("{s} s")
    } else if s < 2 * 3600 && s % 3600 != 0 {
        format!("{} min", s / 60)
    } else if s < 72 * 3600 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h} h")
        } else {
            format!("{h} h {m} min")
        }
    } else {
        let (days, h) = (s / 86400, (s % 86400) / 3600);
        if h == 0 {
            format!("{days} days")
        } else {
            format!("{days} days {h} h")
        }
    }
}

/// A timeout for people: `30 s`, `500 ms`.
pub fn seconds(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 && s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// An age or a retention in days, for people: "36 h", "45 days", "2.5 years".
pub fn age(d: f64) -> String {
    let d = d.max(0.0);
    if d < 2.0 {
        format!("{} h", (d * 24.0).round())
    } else if d < 730.0 {
        format!("{} days", d.round())
    } else {
        format!("{:.1} years", d / 365.25)
    }
}

/// A size on disk: `100 bytes`, `8.0 kB`, `1.5 GB`.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// RFC 3339 in UTC with a `Z`, sub-second digits only when present.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(12), "12");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1000), "-1,000");
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(human_duration(TimeDelta::hours(25)), "25 h");
        assert_eq!(human_duration(TimeDelta::minutes(65)), "65 min");
        assert_eq!(human_duration(TimeDelta::hours(1)), "1 h");
        assert_eq!(human_duration(TimeDelta::days(17)), "17 days");
        assert_eq!(human_duration(TimeDelta::seconds(30)), "30 s");
        assert_eq!(bytes(8192), "8.0 kB");
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(age(0.5), "12 h");
        assert_eq!(age(45.0), "45 days");
        assert_eq!(age(1000.0), "2.7 years");
    }

    #[test]
    fn counts_and_phrases() {
        assert_eq!(plural(1, "row"), "1 row");
        assert_eq!(plural(1204, "row"), "1,204 rows");
        assert_eq!(
            join_words(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
        assert_eq!(who(Some("t"), None).as_deref(), Some("tenant t"));
        assert_eq!(who(None, None), None);
    }
}
