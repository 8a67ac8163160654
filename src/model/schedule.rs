//! pg_cron schedules as time: when a job runs next, and the longest gap
//! between two runs. The syntax a policy may use is checked by
//! `policy::cron`; here a schedule is read the way pg_cron runs it (GMT,
//! Vixie cron's day rule, its `@daily`-style macros, `N seconds`). Every
//! function takes the time as an argument. No I/O here.

use chrono::{DateTime, TimeDelta, Utc};

/// A pg_cron schedule, parsed: a cron expression or an `N seconds` interval.
enum Schedule {
    Cron(Box<croner::Cron>),
    Every(TimeDelta),
}

fn parse_schedule(schedule: &str) -> Option<Schedule> {
    let s = schedule.trim();
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() == 2 && (parts[1] == "seconds" || parts[1] == "second") {
        let n: i64 = parts[0].parse().ok()?;
        return (n > 0).then(|| Schedule::Every(TimeDelta::seconds(n)));
    }
    // pg_cron's macros (Vixie cron's), spelled out.
    let expr = match s.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *".to_string(),
        "@monthly" => "0 0 1 * *".to_string(),
        "@weekly" => "0 0 * * 0".to_string(),
        "@daily" | "@midnight" => "0 0 * * *".to_string(),
        "@hourly" => "0 * * * *".to_string(),
        _ => s.to_string(),
    };
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return None;
    }
    // Vixie cron (and so pg_cron): when the day-of-month or the day-of-week
    // field starts with `*`, a day must match both; otherwise either.
    let both = fields[2].starts_with('*') || fields[4].starts_with('*');
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .dom_and_dow(both)
        .build()
        .parse(&expr)
        .ok()?;
    Some(Schedule::Cron(Box::new(cron)))
}

/// When a job with this pg_cron schedule (GMT) runs next, strictly after
/// `after`. For `N seconds` jobs: at most N seconds after `after`. `None`
/// when the schedule cannot be read.
pub fn next_run(schedule: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    match parse_schedule(schedule)? {
        Schedule::Every(d) => Some(after + d),
        Schedule::Cron(c) => c.find_next_occurrence(&after, false).ok(),
    }
}

/// The schedule's period: the longest gap between two consecutive runs
/// over the year after `from` (daily = 24 h; `0 0 1,15 * *` = 17 days).
/// `None` when the schedule cannot be read.
pub fn period(schedule: &str, from: DateTime<Utc>) -> Option<TimeDelta> {
    match parse_schedule(schedule)? {
        Schedule::Every(d) => Some(d),
        Schedule::Cron(c) => {
            let first = c.find_next_occurrence(&from, false).ok()?;
            let mut prev = first;
            let mut longest = TimeDelta::zero();
            for _ in 0..2000 {
                let next = c.find_next_occurrence(&prev, false).ok()?;
                longest = longest.max(next - prev);
                prev = next;
                if prev - first > TimeDelta::days(400) {
                    break;
                }
            }
            (longest > TimeDelta::zero()).then_some(longest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_run_is_in_gmt_and_strictly_after() {
        let at = t("2026-05-01T03:30:00Z");
        assert_eq!(next_run("30 3 * * *", at), Some(t("2026-05-02T03:30:00Z")));
        assert_eq!(next_run("30 3 * * *", t("2026-05-01T03:29:59Z")), Some(at));
        assert_eq!(next_run("@daily", at), Some(t("2026-05-02T00:00:00Z")));
        assert_eq!(next_run("@midnight", at), Some(t("2026-05-02T00:00:00Z")));
        assert_eq!(
            next_run("10 seconds", at),
            Some(at + TimeDelta::seconds(10))
        );
        assert_eq!(next_run("not a schedule", at), None);
    }

    #[test]
    fn day_fields_follow_vixie_cron() {
        // Both restricted: either matches (the 13th, or a Friday).
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap(); // a Friday
        assert_eq!(next_run("0 0 13 * 5", at), Some(t("2026-05-08T00:00:00Z")));
        // Day of month starts with `*`: both must match (an odd day that is a Monday).
        assert_eq!(next_run("0 0 */2 * 1", at), Some(t("2026-05-11T00:00:00Z")));
        // 7 is Sunday, too.
        assert_eq!(next_run("0 0 * * 7", at), Some(t("2026-05-03T00:00:00Z")));
    }

    #[test]
    fn period_is_the_longest_gap() {
        let at = t("2026-05-01T10:00:00Z");
        assert_eq!(period("30 3 * * *", at), Some(TimeDelta::hours(24)));
        assert_eq!(period("@hourly", at), Some(TimeDelta::hours(1)));
        assert_eq!(period("*/5 * * * *", at), Some(TimeDelta::minutes(5)));
        assert_eq!(period("0 3 * * 1-5", at), Some(TimeDelta::hours(72)));
        assert_eq!(period("0 0 1,15 * *", at), Some(TimeDelta::days(17)));
        assert_eq!(period("30 seconds", at), Some(TimeDelta::seconds(30)));
        assert_eq!(period("", at), None);
    }
}
