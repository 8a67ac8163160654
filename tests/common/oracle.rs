//! The oracle of the guarantee (SPEC §3), written from the SPEC and
//! independently of the compiler and of the SQL: random policies (keeps,
//! overrides, holds, stamping), run-time settings and rows, and which rows
//! each run must leave. `tests/property.rs` checks it on one server,
//! `tests/citus.rs` on a Citus cluster.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration as Span, Months, NaiveDate, TimeZone, Utc};
use postgres::Client;

/// A tiny deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// A retention as the oracle understands it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Keep {
    Hours(i64),
    Days(i64),
    Months(u32),
}

impl Keep {
    pub fn sql(self) -> String {
        match self {
            Keep::Hours(n) => format!("{n} hours"),
            Keep::Days(n) => format!("{n} days"),
            Keep::Months(n) => format!("{n} months"),
        }
    }
    /// `t + self` the way PostgreSQL adds an interval to a timestamp in UTC:
    /// months first (clamped to the month's last day), then days and time.
    pub fn add(self, t: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Keep::Hours(n) => t + Span::hours(n),
            Keep::Days(n) => t + Span::days(n),
            Keep::Months(n) => t.checked_add_months(Months::new(n)).expect("in range"),
        }
    }
    pub fn random(r: &mut Rng) -> Keep {
        match r.below(3) {
            0 => Keep::Hours(1 + r.below(24 * 20) as i64),
            1 => Keep::Days(1 + r.below(120) as i64),
            _ => Keep::Months(1 + r.below(4) as u32),
        }
    }
}

pub const TENANTS: [&str; 4] = ["t1", "t2", "t3", "t4"];
pub const ENVS: [&str; 2] = ["draft", "live"];
pub const GRANULARITIES: [&str; 3] = ["day", "week", "month"];

pub struct Case {
    pub keep: Keep,
    pub new_rows: bool,
    pub env_override: Option<(&'static str, Keep)>,
    pub tenant_overrides: Vec<(&'static str, Option<&'static str>, Keep)>,
    pub settings: Vec<(&'static str, Option<&'static str>, Keep)>,
    pub holds: Vec<(
        Option<&'static str>,
        Option<&'static str>,
        Option<NaiveDate>,
    )>,
    pub granularity: &'static str,
}

/// Up to `max - 1` retention rules for distinct (tenant, environment) pairs,
/// the environment `None` (every environment) half of the time.
pub fn tenant_rules(r: &mut Rng, max: u64) -> Vec<(&'static str, Option<&'static str>, Keep)> {
    let mut rules = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..r.below(max) {
        let t = *r.pick(&TENANTS);
        let e = if r.below(2) == 0 {
            None
        } else {
            Some(*r.pick(&ENVS))
        };
        if seen.insert((t, e)) {
            rules.push((t, e, Keep::random(r)));
        }
    }
    rules
}

impl Case {
    pub fn random(r: &mut Rng) -> Case {
        let tenant_overrides = tenant_rules(r, 3);
        let settings = tenant_rules(r, 4);
        let mut holds = Vec::new();
        for _ in 0..r.below(3) {
            let t = if r.below(3) == 0 {
                None
            } else {
                Some(*r.pick(&TENANTS))
            };
            let e = if r.below(2) == 0 {
                None
            } else {
                Some(*r.pick(&ENVS))
            };
            if t.is_none() && e.is_none() {
                continue; // a whole-dataset hold makes the case trivial
            }
            let until = match r.below(3) {
                0 => None,
                _ => NaiveDate::from_ymd_opt(2026, 1 + r.below(12) as u32, 1 + r.below(28) as u32),
            };
            holds.push((t, e, until));
        }
        Case {
            keep: Keep::random(r),
            new_rows: r.below(2) == 0,
            env_override: if r.below(2) == 0 {
                Some((*r.pick(&ENVS), Keep::random(r)))
            } else {
                None
            },
            tenant_overrides,
            settings,
            holds,
            granularity: GRANULARITIES[r.below(3) as usize],
        }
    }

    pub fn policy(&self) -> String {
        self.policy_for("postgresql")
    }

    /// The policy for `engine` (`postgresql` or `citus`).
    pub fn policy_for(&self, engine: &str) -> String {
        let mut s = format!(
            "version: 1\nengine: {engine}\nenvironments: [draft, live]\ndatasets:\n  d:\n    description: Random.\n    table: app.d\n    columns:\n      id: bigint generated always as identity\n      tenant: text not null\n      env: text not null\n      at: timestamptz not null\n    time: at\n    tenant: tenant\n    environment: env\n    keep: {}\n    partition: {}\n    changes_apply_to: {}\n",
            self.keep.sql(),
            self.granularity,
            if self.new_rows { "new_rows" } else { "all_rows" }
        );
        let mut overrides = String::new();
        if let Some((e, k)) = self.env_override {
            overrides.push_str(&format!(
                "  - environment: {e}\n    keep: {{ d: {} }}\n",
                k.sql()
            ));
        }
        for (t, e, k) in &self.tenant_overrides {
            overrides.push_str(&format!("  - tenant: \"{t}\"\n"));
            if let Some(e) = e {
                overrides.push_str(&format!("    environment: {e}\n"));
            }
            overrides.push_str(&format!("    keep: {{ d: {} }}\n", k.sql()));
        }
        if !overrides.is_empty() {
            s.push_str("overrides:\n");
            s.push_str(&overrides);
        }
        if !self.holds.is_empty() {
            s.push_str("holds:\n");
            for (i, (t, e, until)) in self.holds.iter().enumerate() {
                s.push_str(&format!("  - reason: \"hold {i}\"\n"));
                if let Some(t) = t {
                    s.push_str(&format!("    tenant: \"{t}\"\n"));
                }
                if let Some(e) = e {
                    s.push_str(&format!("    environment: {e}\n"));
                }
                if let Some(u) = until {
                    s.push_str(&format!("    until: {u}\n"));
                }
            }
        }
        s
    }

    /// SPEC §3, step by step: the retention in force for (tenant, env).
    pub fn retention(&self, tenant: &str, env: &str) -> Keep {
        let by_tenant = |want_env: Option<&str>| {
            self.tenant_overrides
                .iter()
                .find(|(t, e, _)| *t == tenant && *e == want_env)
                .map(|x| x.2)
        };
        if let Some(k) = by_tenant(Some(env)).or_else(|| by_tenant(None)) {
            return k;
        }
        let setting = |want_env: Option<&str>| {
            self.settings
                .iter()
                .find(|(t, e, _)| *t == tenant && *e == want_env)
                .map(|x| x.2)
        };
        if let Some(k) = setting(Some(env)).or_else(|| setting(None)) {
            return k;
        }
        match self.env_override {
            Some((e, k)) if e == env => k,
            _ => self.keep,
        }
    }

    pub fn held(&self, tenant: &str, env: &str, t: DateTime<Utc>) -> bool {
        self.holds.iter().any(|(ht, he, until)| {
            ht.is_none_or(|x| x == tenant)
                && he.is_none_or(|x| x == env)
                && until.is_none_or(|u| t.date_naive() <= u)
        })
    }
}

/// What checking one case saw.
#[derive(Default)]
pub struct Checked {
    /// Rows checked, summed over the runs.
    pub rows: usize,
    /// Rows removed, summed over the runs.
    pub removed: usize,
    /// Each run's log detail, with ` dropped=<n>` appended.
    pub details: Vec<String>,
}

/// Case `case_no` on a database where its policy is applied (`c`): the
/// tenant settings, partitions over the rows' span, random rows, then three
/// runs at increasing T, each of which must leave exactly the rows the
/// oracle keeps (0 over-deleted, 0 under-deleted; it panics otherwise).
pub fn check_case(c: &mut Client, case_no: u64, r: &mut Rng, case: &Case) -> Checked {
    check_case_with(c, case_no, r, case, &mut |_| {})
}

/// [`check_case`], calling `before_runs` once the partitions and rows are
/// in, before the first run.
pub fn check_case_with(
    c: &mut Client,
    case_no: u64,
    r: &mut Rng,
    case: &Case,
    before_runs: &mut dyn FnMut(&mut Client),
) -> Checked {
    let mut seen = Checked::default();
    for (t, e, k) in &case.settings {
        c.execute(
            "INSERT INTO retention.tenant_setting (dataset, tenant, environment, keep) VALUES ('d', $1, $2, $3::text::interval)",
            &[t, e, &k.sql()],
        )
        .unwrap();
    }
    // Partitions over the whole span of the rows, as an old table would have.
    let base = Utc.with_ymd_and_hms(2026, 6, 15, 0, 0, 0).unwrap();
    c.batch_execute(&format!(
        "SELECT retention.create_partition('d', g) FROM generate_series(
             retention.period_start('{g}', '{from}'), '{to}'::timestamptz, interval '1 {g}') AS g",
        g = case.granularity,
        from = (base - Span::days(200)).to_rfc3339(),
        to = (base + Span::days(60)).to_rfc3339(),
    ))
    .unwrap();
    // Rows: random times up to 260 days back, some far outside the partitions.
    let mut rows = Vec::new();
    for i in 0..150 {
        let tenant = *r.pick(&TENANTS);
        let env = *r.pick(&ENVS);
        let offset = match r.below(10) {
            0 => Span::days(400 + r.below(400) as i64),
            _ => Span::seconds(r.below(260 * 86_400) as i64),
        };
        let at = base - offset + Span::days(30);
        rows.push((i, tenant, env, at));
    }
    // Every third case, a dense month of old rows (4,000 of them, 140 to
    // 170 days back): partitions with enough rows that the few a hold
    // or a longer retention keeps are copied out, neighbours together.
    if case_no.is_multiple_of(3) {
        for i in 150..4150 {
            let tenant = *r.pick(&TENANTS);
            let env = *r.pick(&ENVS);
            let at = base - Span::days(170) + Span::seconds(r.below(30 * 86_400) as i64);
            rows.push((i, tenant, env, at));
        }
    }
    let mut insert =
        String::from("INSERT INTO app.d (id, tenant, env, at) OVERRIDING SYSTEM VALUE VALUES ");
    insert.push_str(
        &rows
            .iter()
            .map(|(i, t, e, at)| format!("({i}, '{t}', '{e}', '{}')", at.to_rfc3339()))
            .collect::<Vec<_>>()
            .join(", "),
    );
    c.batch_execute(&insert).unwrap();
    // Statistics, as autovacuum would have them: the run chooses how to
    // treat a partition by its size (copying out a few held rows, say).
    c.batch_execute("ANALYZE app.d").unwrap();
    before_runs(c);
    // Several runs at increasing T; each must remove exactly the expired rows.
    let mut alive: BTreeSet<i64> = rows.iter().map(|r| r.0 as i64).collect();
    for step in 0..3 {
        let t = base + Span::seconds((step * 20 * 86_400 + r.below(86_400)) as i64);
        c.batch_execute(&format!(
            "CALL retention.\"enforce_d\"(p_now => '{}')",
            t.to_rfc3339()
        ))
        .unwrap_or_else(|e| panic!("case {case_no}: {e:?}"));
        let detail: String = c
            .query_one(
                "SELECT coalesce(detail, '') || ' dropped=' || cardinality(partitions_dropped)
                   FROM retention.run_log WHERE dataset = 'd' ORDER BY id DESC LIMIT 1",
                &[],
            )
            .unwrap()
            .get(0);
        seen.details.push(detail);
        let left: BTreeSet<i64> = c
            .query("SELECT id FROM app.d", &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let expected: BTreeSet<i64> = rows
            .iter()
            .filter(|(i, tenant, env, at)| {
                alive.contains(&(*i as i64)) && {
                    let deadline = case.retention(tenant, env).add(*at);
                    deadline >= t || case.held(tenant, env, t)
                }
            })
            .map(|r| r.0 as i64)
            .collect();
        let over: Vec<_> = expected.difference(&left).collect();
        let under: Vec<_> = left.difference(&expected).collect();
        assert!(
            over.is_empty() && under.is_empty(),
            "case {case_no} step {step} at T={t}: over-deleted {over:?}, under-deleted {under:?}\npolicy:\n{}\nsettings: {:?}",
            case.policy(),
            case.settings
        );
        seen.rows += alive.len();
        seen.removed += alive.len() - left.len();
        alive = left;
    }
    seen
}
