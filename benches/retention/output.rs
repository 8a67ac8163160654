//! The results: numbers for people, the Markdown table, the targets met
//! and missed, the check that every exact method left the same rows, and
//! the SVG chart.

use std::fmt::Write as _;

use pgretain::words::thousands;

use crate::config::{Method, Scenario, Step};
use crate::measure::Measurement;
use crate::setup::{Bench, ARCHIVE_KEEP_DAYS};

pub(crate) fn human_rows(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        thousands(n as i64)
    }
}

pub(crate) fn bytes(n: i64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

pub(crate) fn secs(s: f64) -> String {
    if s < 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else if s < 10.0 {
        format!("{s:.3} s")
    } else {
        format!("{s:.1} s")
    }
}

pub(crate) fn ratio(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_string()
    } else if x >= 10.0 {
        format!("{x:.0}×")
    } else if x >= 0.1 {
        format!("{x:.2}×")
    } else {
        format!("{x:.3}×")
    }
}

/// `x` = their time / our time, as "N× faster" or "N× slower".
pub(crate) fn faster(x: f64) -> String {
    if !x.is_finite() {
        "n/a".to_string()
    } else if x >= 1.0 {
        format!("{} faster", ratio(x))
    } else {
        format!("{} slower", ratio(1.0 / x))
    }
}

pub(crate) fn ms(x: f64) -> String {
    if x.is_nan() {
        "–".to_string()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

impl Bench {
    pub(crate) fn find(
        &self,
        rows: u64,
        sc: Scenario,
        step: Step,
        m: Method,
    ) -> Option<&Measurement> {
        self.results
            .iter()
            .find(|r| r.rows == rows && r.scenario == sc && r.step == step && r.method == m)
    }

    pub(crate) fn markdown_table(&self) -> String {
        let mut s = String::new();
        s.push_str(
            "| rows | scenario | moment | method | rows removed | time | time ÷ pgretain's | WAL | WAL ÷ pgretain's \
             | size after | dead tuples | exact | insert p50 / p99 idle (ms) | insert p50 / p99 / max during (ms) \
             | insert errors | VACUUM after | heap blocks touched (at most) ÷ heap blocks |\n",
        );
        s.push_str("|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|\n");
        for r in &self.results {
            let base = self.find(r.rows, r.scenario, r.step, Method::Pgretain);
            let (tv, wv) = match base {
                Some(b) if r.method != Method::Pgretain => (
                    ratio(r.secs / b.secs),
                    ratio(r.wal as f64 / b.wal.max(1) as f64),
                ),
                _ => ("–".to_string(), "–".to_string()),
            };
            let exact = if r.exact() {
                "yes".to_string()
            } else {
                let mut parts = Vec::new();
                if r.expired_left > 0 {
                    parts.push(format!("{} expired rows left", thousands(r.expired_left)));
                }
                if r.wrongly_removed > 0 {
                    parts.push(format!(
                        "{} unexpired rows removed",
                        thousands(r.wrongly_removed)
                    ));
                }
                format!("**no**: {}", parts.join(", "))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {} / {} / {} | {} | {} | {:.1}% |",
                human_rows(r.rows),
                r.scenario.name(),
                r.step.label(&self.cfg),
                r.method.name(),
                thousands(r.removed),
                secs(r.secs),
                tv,
                bytes(r.wal),
                wv,
                bytes(r.size_after),
                thousands(r.dead),
                exact,
                ms(r.idle.p50_ms),
                ms(r.idle.p99_ms),
                ms(r.during.p50_ms),
                ms(r.during.p99_ms),
                ms(r.during.max_ms),
                r.during.errors,
                if r.vacuum_rels == 0 {
                    "nothing to do".to_string()
                } else {
                    secs(r.vacuum_secs)
                },
                100.0 * r.heap_reads as f64 / r.heap_total.max(1) as f64,
            );
        }
        s
    }

    /// The issue's targets, each met or missed, with the measured value.
    pub(crate) fn targets(&self) -> String {
        let mut s = String::new();
        let rows = self.cfg.rows;
        let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
        let mut line = |text: String| {
            s.push_str("- ");
            s.push_str(&text);
            s.push('\n');
        };
        let sizes: Vec<u64> = std::iter::once(rows).chain(self.cfg.growth_rows).collect();
        for (&n, step) in sizes
            .iter()
            .flat_map(|n| [(n, Step::CatchUp), (n, Step::CatchUpBound)])
        {
            let (a, b) = (
                self.find(n, Scenario::Uniform, step, Method::Pgretain),
                self.find(n, Scenario::Uniform, step, Method::Delete),
            );
            if let (Some(a), Some(b)) = (a, b) {
                let tr = b.secs / a.secs;
                let wr = a.wal as f64 / b.wal.max(1) as f64;
                line(format!(
                    "{} rows, uniform {}, pgretain vs one DELETE: {} (target ≥ 100× faster: {}); \
                     {:.2}% of its WAL, {} vs {} (target ≤ 1%: {})",
                    human_rows(n),
                    step.label(&self.cfg),
                    faster(tr),
                    verdict(tr >= 100.0),
                    wr * 100.0,
                    bytes(a.wal),
                    bytes(b.wal),
                    verdict(wr <= 0.01)
                ));
            }
        }
        for &n in &sizes {
            if let (Some(a), Some(e), Some(b)) = (
                self.find(n, Scenario::Uniform, Step::CatchUp, Method::Pgretain),
                self.find(n, Scenario::Uniform, Step::CatchUp, Method::Floor),
                self.find(n, Scenario::Uniform, Step::CatchUp, Method::Delete),
            ) {
                line(format!(
                    "{} rows, uniform catch-up, the floor of any partition-dropping method (a bare \
                     `DROP TABLE; COMMIT` per expired partition, nothing else): {} — one DELETE takes {} \
                     ({} of the floor), pgretain {} ({} of the floor)",
                    human_rows(n),
                    secs(e.secs),
                    secs(b.secs),
                    ratio(b.secs / e.secs),
                    secs(a.secs),
                    ratio(a.secs / e.secs)
                ));
            }
        }
        if let Some(g) = self.cfg.growth_rows {
            for step in [Step::CatchUp, Step::CatchUpBound] {
                if let (Some(a1), Some(a10)) = (
                    self.find(rows, Scenario::Uniform, step, Method::Pgretain),
                    self.find(g, Scenario::Uniform, step, Method::Pgretain),
                ) {
                    let gr = a10.secs / a1.secs;
                    line(format!(
                        "pgretain {} time from {} to {} rows: {} → {}, {} (target ≤ 1.2×: {})",
                        step.label(&self.cfg),
                        human_rows(rows),
                        human_rows(g),
                        secs(a1.secs),
                        secs(a10.secs),
                        ratio(gr),
                        verdict(gr <= 1.2)
                    ));
                }
            }
        } else {
            line("growth from 1M to 10M rows: not measured in this run (use --growth-rows)".into());
        }
        if let (Some(a), Some(c)) = (
            self.find(rows, Scenario::Mixed, Step::CatchUp, Method::Pgretain),
            self.find(rows, Scenario::Mixed, Step::CatchUp, Method::Batched),
        ) {
            let tr = a.secs / c.secs;
            let wr = a.wal as f64 / c.wal.max(1) as f64;
            line(format!(
                "{} rows, mixed catch-up, pgretain vs batched DELETE: time {:.2}× (target ≤ 1/5: {}), \
                 WAL {:.0}% (target ≤ 30%: {}); exact guarantee: {} (same rows left as every other method: {})",
                human_rows(rows),
                tr,
                verdict(tr <= 0.2),
                wr * 100.0,
                verdict(wr <= 0.3),
                if a.exact() { "yes" } else { "**no**" },
                if a.rows_left == c.rows_left { "yes" } else { "**no**" },
            ));
        }
        if let Some(a) = self.find(rows, Scenario::Mixed, Step::Steady, Method::Pgretain) {
            let share = a.heap_reads as f64 / a.heap_total.max(1) as f64;
            let others: Vec<String> = [Method::Delete, Method::Batched]
                .iter()
                .filter_map(|&m| self.find(rows, Scenario::Mixed, Step::Steady, m))
                .map(|b| {
                    format!(
                        "{} {:.0}%",
                        b.method.name(),
                        100.0 * b.heap_reads as f64 / b.heap_total.max(1) as f64
                    )
                })
                .collect();
            line(format!(
                "{} rows, mixed steady state (+1 day): pgretain touched at most {} of the table's {} heap blocks, {:.1}% \
                 (target ≤ 10%: {}){}",
                human_rows(rows),
                thousands(a.heap_reads),
                thousands(a.heap_total),
                share * 100.0,
                verdict(share <= 0.1),
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; {}", others.join(", "))
                }
            ));
        }
        if let (Some(a), Some(b)) = (
            self.find(rows, Scenario::Imported, Step::CatchUp, Method::Pgretain),
            self.find(rows, Scenario::Imported, Step::CatchUp, Method::Delete),
        ) {
            let tr = a.secs / b.secs;
            let wr = a.wal as f64 / b.wal.max(1) as f64;
            let live = self
                .imported_live
                .iter()
                .find(|(n, _)| *n == rows)
                .map(|(_, l)| *l);
            line(format!(
                "{} rows, imported history, pgretain vs one DELETE: time {:.2}× (target ≤ 1/3: {}), \
                 WAL {:.1}% (target ≤ 5%: {}); live rows left in the default partition: {} (target 0: {}); \
                 exact guarantee: {}",
                human_rows(rows),
                tr,
                verdict(tr <= 1.0 / 3.0),
                wr * 100.0,
                verdict(wr <= 0.05),
                live.map_or("not counted".to_string(), |l| l.to_string()),
                verdict(live == Some(0)),
                if a.exact() { "yes" } else { "**no**" },
            ));
        }
        if let (Some(a), Some(b)) = (
            self.find(rows, Scenario::Archived, Step::CatchUp, Method::Pgretain),
            self.find(rows, Scenario::Archived, Step::CatchUp, Method::Delete),
        ) {
            let wr = a.wal as f64 / b.wal.max(1) as f64;
            let left = |m: Method| {
                self.archived_left
                    .iter()
                    .find(|(n, x, _)| *n == rows && *x == m)
                    .map(|x| x.2)
            };
            line(format!(
                "{} rows, archive catch-up, pgretain vs the row copy (one transaction: move the expired rows \
                 to an archive table, delete its rows past {ARCHIVE_KEEP_DAYS} days): time {:.2}×, WAL {:.0}% \
                 ({} vs {}; target ≤ 5%: {}); rows left in the archive: {} vs {} (same: {})",
                human_rows(rows),
                a.secs / b.secs,
                wr * 100.0,
                bytes(a.wal),
                bytes(b.wal),
                verdict(wr <= 0.05),
                left(Method::Pgretain).map_or("?".into(), thousands),
                left(Method::Delete).map_or("?".into(), thousands),
                if left(Method::Pgretain).is_some() && left(Method::Pgretain) == left(Method::Delete) {
                    "yes"
                } else {
                    "**no**"
                }
            ));
        }
        for (&n, step) in sizes
            .iter()
            .flat_map(|n| [(n, Step::CatchUp), (n, Step::CatchUpBound)])
        {
            if let Some(a) = self.find(n, Scenario::Uniform, step, Method::Pgretain) {
                let r = a.during.p99_ms / a.idle.p99_ms;
                line(format!(
                    "{} rows, insert p99 during pgretain's uniform {} run: {} ms vs {} ms idle = {} \
                     (target ≤ 1.5×: {}), {} errors in {} inserts (target 0: {})",
                    human_rows(n),
                    step.label(&self.cfg),
                    ms(a.during.p99_ms),
                    ms(a.idle.p99_ms),
                    ratio(r),
                    verdict(r <= 1.5),
                    a.during.errors,
                    a.during.n,
                    verdict(a.during.errors == 0)
                ));
            }
        }
        for &n in &sizes {
            for step in [Step::Steady, Step::Aligned, Step::Change] {
                if let (Some(a), Some(b)) = (
                    self.find(n, Scenario::Uniform, step, Method::Pgretain),
                    self.find(n, Scenario::Uniform, step, Method::Delete),
                ) {
                    let tr = b.secs / a.secs;
                    let wr = a.wal as f64 / b.wal.max(1) as f64;
                    let target = if step == Step::Change {
                        "(no target)".to_string()
                    } else {
                        format!("(target ≥ 20× faster: {})", verdict(tr >= 20.0))
                    };
                    line(format!(
                        "{} rows, {}: pgretain {} vs DELETE {}: {} {target}; \
                         pgretain's WAL is {:.0}% of DELETE's ({} vs {})",
                        human_rows(n),
                        step.label(&self.cfg),
                        secs(a.secs),
                        secs(b.secs),
                        faster(tr),
                        wr * 100.0,
                        bytes(a.wal),
                        bytes(b.wal)
                    ));
                }
            }
        }
        s
    }

    /// Every exact method must leave the same rows in each (size, scenario, moment).
    pub(crate) fn check_same_rows(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for r in &self.results {
            if !r.method.exact() {
                continue;
            }
            for o in &self.results {
                if o.method.exact()
                    && (o.rows, o.scenario, o.step) == (r.rows, r.scenario, r.step)
                    && o.rows_left != r.rows_left
                {
                    problems.push(format!(
                        "{} {} {}: {} left {} rows, {} left {}",
                        human_rows(r.rows),
                        r.scenario.name(),
                        r.step.label(&self.cfg),
                        r.method.name(),
                        r.rows_left,
                        o.method.name(),
                        o.rows_left
                    ));
                }
            }
        }
        problems
    }

    /// A horizontal bar chart of the run times, log scale, one group per
    /// (size, scenario, moment), one bar per method.
    pub(crate) fn svg(&self) -> String {
        let label_w = 330.0;
        let chart_w = 470.0;
        let value_w = 90.0;
        let bar_h = 14.0;
        let gap = 4.0;
        let group_gap = 14.0;
        let top = 58.0;
        let mut groups: Vec<(u64, Scenario, Step)> = Vec::new();
        for r in &self.results {
            let k = (r.rows, r.scenario, r.step);
            if !groups.contains(&k) {
                groups.push(k);
            }
        }
        let min = self
            .results
            .iter()
            .map(|r| r.secs)
            .fold(f64::INFINITY, f64::min)
            .max(1e-4);
        let max = self
            .results
            .iter()
            .map(|r| r.secs)
            .fold(0.0, f64::max)
            .max(min * 10.0);
        let (lmin, lmax) = (min.log10().floor(), max.log10().ceil());
        let x = |v: f64| label_w + (v.max(1e-6).log10() - lmin) / (lmax - lmin) * chart_w;
        let n_bars = self.results.len() as f64;
        let height =
            top + n_bars * (bar_h + gap) + groups.len() as f64 * (group_gap + bar_h + gap) + 40.0;
        let width = label_w + chart_w + value_w + 10.0;
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            s,
            r##"<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="18" font-size="14" font-weight="bold">Time of one enforcement run (log scale; shorter is better)</text>"##
        );
        let mut lx = 10.0;
        for m in Method::ALL {
            if self.results.iter().any(|r| r.method == m) {
                let _ = writeln!(
                    s,
                    r#"<rect x="{lx}" y="28" width="12" height="12" fill="{}"/><text x="{}" y="38">{}</text>"#,
                    m.color(),
                    lx + 16.0,
                    esc(m.name())
                );
                lx += 40.0 + 7.0 * m.name().len() as f64;
            }
        }
        let axis_bottom = height - 30.0;
        let mut e = lmin;
        while e <= lmax + 1e-9 {
            let v = 10f64.powf(e);
            let gx = x(v);
            let k = e.round() as i32;
            let label = if k < 0 {
                format!("{} ms", 10u64.pow((k + 3).max(0) as u32))
            } else {
                format!("{} s", 10u64.pow(k as u32))
            };
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{axis_bottom:.1}" stroke="#dddddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#555555">{label}</text>"##,
                axis_bottom + 14.0
            );
            e += 1.0;
        }
        let mut y = top;
        for (rows, sc, step) in &groups {
            let title = format!(
                "{} rows · {} · {}",
                human_rows(*rows),
                sc.name(),
                step.label(&self.cfg)
            );
            let _ = writeln!(
                s,
                r#"<text x="10" y="{:.1}" font-weight="bold">{}</text>"#,
                y + bar_h - 3.0,
                esc(&title)
            );
            y += bar_h + gap;
            for r in self
                .results
                .iter()
                .filter(|r| (r.rows, r.scenario, r.step) == (*rows, *sc, *step))
            {
                let w = (x(r.secs) - label_w).max(1.0);
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{label_w}" y="{y:.1}" width="{w:.1}" height="{bar_h}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                    label_w - 6.0,
                    y + bar_h - 3.0,
                    esc(r.method.name()),
                    r.method.color(),
                    label_w + w + 4.0,
                    y + bar_h - 3.0,
                    esc(&secs(r.secs))
                );
                y += bar_h + gap;
            }
            y += group_gap;
        }
        s.push_str("</svg>\n");
        s
    }
}
