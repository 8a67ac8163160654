//! The report's charts, as inline SVG drawn here (no script, no network):
//! rows removed per run, the age of the stored rows against the deadline,
//! and every dataset's retention on a log scale. Pure functions, no I/O.

use std::fmt::Write as _;

use super::gather::Evidence;
use super::prose::{bucket_label, when, who};
use crate::db::runs::RunRow;
use crate::model::{Dataset, Duration, OnExpiry, Policy};
use crate::words::{plural, thousands};

/// Escape text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn compact(n: f64) -> String {
    if n >= 1e9 {
        format!("{}G", trim(n / 1e9))
    } else if n >= 1e6 {
        format!("{}M", trim(n / 1e6))
    } else if n >= 1e4 {
        format!("{}k", trim(n / 1e3))
    } else {
        thousands(n.round() as i64)
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.1}");
    s.trim_end_matches(".0").to_string()
}

/// 1, 2, 2.5 or 5 × 10^k, at least `v`: a tick step.
fn nice_step(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// The Y axis (grid lines and labels) of a chart; returns the scale max.
fn y_axis(svg: &mut String, max: f64, left: f64, top: f64, w: f64, h: f64) -> f64 {
    let step = nice_step(max / 5.0);
    let n = ((max / step).ceil() as i64).max(1);
    let top_value = step * n as f64;
    for i in 0..=n {
        let v = step * i as f64;
        let y = top + h - h * v / top_value;
        let _ = write!(
            svg,
            r#"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="tick" text-anchor="end">{}</text>"#,
            left + w,
            left - 6.0,
            y + 4.0,
            esc(&compact(v))
        );
    }
    top_value
}

const CHART_W: f64 = 1000.0;

const CHART_H: f64 = 260.0;

/// A compact chart saying there is nothing to draw.
fn svg_empty(kind: &str, label: &str, note: &str) -> String {
    format!(
        r#"<svg class="chart chart-{kind}" viewBox="0 0 {CHART_W} 64" width="{CHART_W}" height="64" role="img" aria-label="{}"><rect x="64" y="6" width="{}" height="52" rx="4" class="empty"/><text x="{}" y="37" text-anchor="middle" class="note">{}</text></svg>"#,
        esc(label),
        CHART_W - 84.0,
        64.0 + (CHART_W - 84.0) / 2.0,
        esc(note)
    )
}

fn svg_open(kind: &str, label: &str) -> String {
    format!(
        r#"<svg class="chart chart-{kind}" viewBox="0 0 {CHART_W} {CHART_H}" width="{CHART_W}" height="{CHART_H}" role="img" aria-label="{}">"#,
        esc(label)
    )
}

/// Bar chart: rows removed per enforcement run, coloured by outcome.
pub fn svg_runs(dataset: &str, runs: &[RunRow], archives: bool) -> String {
    let label = format!("rows removed per run, {dataset}");
    if runs.is_empty() {
        return svg_empty("runs", &label, "no enforcement run recorded yet");
    }
    let mut s = svg_open("runs", &label);
    let (left, top, w, h) = (60.0, 14.0, CHART_W - 74.0, CHART_H - 60.0);
    let max = runs.iter().map(|r| r.removed(archives)).max().unwrap_or(0) as f64;
    let top_value = y_axis(&mut s, max, left, top, w, h);
    let slot = w / runs.len() as f64;
    let bar = (slot * 0.7).min(36.0);
    for (i, r) in runs.iter().enumerate() {
        let v = r.removed(archives) as f64;
        let bh = if v > 0.0 {
            (h * v / top_value).max(1.5)
        } else {
            0.0
        };
        let x = left + slot * i as f64 + (slot - bar) / 2.0;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{bh:.1}" class="bar {}"><title>{}</title></rect>"#,
            top + h - bh,
            esc(match r.outcome.as_str() {
                "ok" => "ok",
                "partial" | "skipped" | "running" => "warn",
                _ => "bad",
            }),
            esc(&format!(
                "{}: {} removed ({}{})",
                when(r.reference_time),
                plural(r.removed(archives), "row"),
                r.outcome,
                r.detail
                    .as_ref()
                    .map(|d| format!("; {d}"))
                    .unwrap_or_default()
            ))
        );
        if v == 0.0 {
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="zero"/>"#,
                x + bar,
                y = top + h
            );
        }
    }
    let labels = runs.len().min(6);
    for k in 0..labels {
        let i = if labels == 1 {
            0
        } else {
            k * (runs.len() - 1) / (labels - 1)
        };
        let x = left + slot * i as f64 + slot / 2.0;
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
            top + h + 16.0,
            esc(&runs[i].reference_time.format("%m-%d %H:%M").to_string())
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{y}" x2="{:.1}" y2="{y}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">enforcement runs by their time T (UTC), oldest to newest</text></svg>"#,
        left + w,
        left + w / 2.0,
        CHART_H - 8.0,
        y = top + h
    );
    s
}

/// Histogram: stored rows by age, split into within retention, past the
/// deadline (the next run removes them) and held; the retention marked.
pub fn svg_ages(ds: &Dataset, e: &Evidence) -> String {
    let label = format!("age of the stored rows, {}", ds.name);
    if e.buckets.iter().all(|b| b.rows == 0) {
        return svg_empty("ages", &label, "no rows stored");
    }
    let mut s = svg_open("ages", &label);
    let (left, top, w, h) = (64.0, 24.0, CHART_W - 84.0, CHART_H - 92.0);
    // One unit for the whole axis.
    let range = e.keep_days * 1.5;
    let (unit, per_day) = if range < 3.0 {
        ("hours", 24.0)
    } else if range > 1500.0 {
        ("years", 1.0 / 365.25)
    } else {
        ("days", 1.0)
    };
    let num = |d: f64| {
        let v = d * per_day;
        if unit == "years" {
            format!("{v:.1}")
        } else {
            format!("{}", v.round())
        }
    };
    let max = e.buckets.iter().map(|b| b.rows).max().unwrap_or(0) as f64;
    let top_value = y_axis(&mut s, max, left, top, w, h);
    let slot = w / e.buckets.len() as f64;
    let mut deadline_x = None;
    let tick_y = top + h + 15.0;
    for (i, b) in e.buckets.iter().enumerate() {
        let x0 = left + slot * i as f64;
        let x = x0 + 1.0;
        let bw = slot - 2.0;
        let within = b.rows - b.past_deadline - b.held;
        let mut y = top + h;
        for (v, class, what) in [
            (within, "within", "within their retention"),
            (b.held, "held", "past their deadline, kept by a legal hold"),
            (
                b.past_deadline,
                "past",
                "past their deadline, removed by the next run",
            ),
        ] {
            if v <= 0 {
                continue;
            }
            let bh = (h * v as f64 / top_value).max(1.5);
            y -= bh;
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{bw:.1}" height="{bh:.1}" class="bar {class}"><title>{}</title></rect>"#,
                esc(&format!(
                    "age {}: {} {what}",
                    bucket_label(b),
                    plural(v, "row")
                ))
            );
        }
        // Ages at the bucket edges; the open buckets are named.
        match (b.from_days, b.to_days) {
            (None, _) => {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">future</text>"#,
                    x0 + slot / 2.0
                );
            }
            (Some(_), None) => {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">older</text>"#,
                    x0 + slot / 2.0
                );
            }
            (Some(a), Some(z)) => {
                let _ = write!(
                    s,
                    r#"<text x="{x0:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">{}</text>"#,
                    num(a)
                );
                let last = e.buckets.get(i + 1).is_none_or(|n| n.to_days.is_none());
                if last {
                    let _ = write!(
                        s,
                        r#"<text x="{:.1}" y="{tick_y:.1}" class="tick" text-anchor="middle">{}</text>"#,
                        x0 + slot,
                        num(z)
                    );
                }
                if a <= e.keep_days && e.keep_days <= z && deadline_x.is_none() {
                    deadline_x = Some(x0 + slot * (e.keep_days - a) / (z - a));
                }
            }
        }
    }
    if let Some(x) = deadline_x {
        let anchor = if x > left + w * 0.75 { "end" } else { "start" };
        let dx = if anchor == "end" { -5.0 } else { 5.0 };
        let _ = write!(
            s,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" class="deadline"/><text x="{:.1}" y="{:.1}" class="deadline-label" text-anchor="{anchor}">deadline: retention {}</text>"#,
            top - 10.0,
            top + h,
            x + dx,
            top - 2.0,
            esc(&ds.keep.to_string())
        );
    }
    let _ = write!(
        s,
        r#"<line x1="{left}" y1="{y}" x2="{:.1}" y2="{y}" class="axis"/><text x="{:.1}" y="{:.1}" class="label" text-anchor="middle">age of the row in {unit} (now − {}){}</text>"#,
        left + w,
        left + w / 2.0,
        top + h + 34.0,
        esc(&ds.time),
        if e.sampled_percent.is_some() {
            ", from a sample"
        } else {
            ""
        },
        y = top + h
    );
    let ly = top + h + 58.0;
    let mut lx = left;
    for (class, text) in [
        ("within", "within retention"),
        ("held", "past deadline, kept by a legal hold"),
        ("past", "past deadline, removed by the next run"),
    ] {
        let _ = write!(
            s,
            r#"<rect x="{lx:.1}" y="{:.1}" width="11" height="11" class="bar {class}"/><text x="{:.1}" y="{ly:.1}" class="legend">{}</text>"#,
            ly - 10.0,
            lx + 16.0,
            esc(text)
        );
        lx += 16.0 + text.chars().count() as f64 * 6.8 + 26.0;
    }
    s.push_str("</svg>");
    s
}

/// Log-scale chart of every dataset's retention: the default (bar), the
/// archive period after it, the tenant bounds (whisker) and overrides (dots).
pub fn svg_retention(policy: &Policy) -> String {
    let row_h = 30.0;
    let (left, top, w) = (170.0, 12.0, CHART_W - 190.0);
    let h = row_h * policy.datasets.len().max(1) as f64;
    let total_h = top + h + 52.0;
    let mut s = format!(
        r#"<svg class="chart chart-retention" viewBox="0 0 {CHART_W} {total_h}" width="{CHART_W}" height="{total_h}" role="img" aria-label="retention by dataset">"#
    );
    let hours = |d: Duration| d.pg_micros() as f64 / 3_600_000_000.0;
    let mut max_h: f64 = 24.0 * 30.0;
    for ds in &policy.datasets {
        max_h =
            max_h.max(hours(ds.keep) + ds.archive.as_ref().map(|a| hours(a.keep)).unwrap_or(0.0));
        if let Some(m) = ds.max_keep {
            max_h = max_h.max(hours(m));
        }
    }
    for o in &policy.overrides {
        max_h = max_h.max(hours(o.keep));
    }
    let lo = 1.0f64.ln();
    let hi = (max_h * 1.3).ln();
    let x = |hrs: f64| left + w * (hrs.max(1.0).ln() - lo) / (hi - lo);
    for (label, hrs) in [
        ("1 hour", 1.0),
        ("1 day", 24.0),
        ("1 week", 168.0),
        ("1 month", 720.0),
        ("1 year", 8_640.0),
        ("10 years", 86_400.0),
        ("100 years", 864_000.0),
    ] {
        if hrs > max_h * 1.3 {
            break;
        }
        let xx = x(hrs);
        let _ = write!(
            s,
            r#"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" class="grid"/><text x="{xx:.1}" y="{:.1}" class="tick" text-anchor="middle">{label}</text>"#,
            top + h,
            top + h + 14.0
        );
    }
    let overrides = policy.overrides_by_dataset();
    for (i, ds) in policy.datasets.iter().enumerate() {
        let cy = top + row_h * i as f64 + row_h / 2.0;
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="name" text-anchor="end">{}</text>"#,
            left - 8.0,
            cy + 4.0,
            esc(&ds.name)
        );
        let kx = x(hours(ds.keep));
        let _ = write!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="{:.1}" height="12" class="bar within"><title>{}</title></rect>"#,
            cy - 6.0,
            (kx - left).max(1.0),
            esc(&format!("{}: kept {}", ds.name, ds.keep))
        );
        if let (Some(a), OnExpiry::Archive) = (&ds.archive, ds.on_expiry) {
            let ax = x(hours(ds.keep) + hours(a.keep));
            let _ = write!(
                s,
                r#"<rect x="{kx:.1}" y="{:.1}" width="{:.1}" height="12" class="bar archive"><title>{}</title></rect>"#,
                cy - 6.0,
                (ax - kx).max(1.0),
                esc(&format!("{}: then {} in the archive", ds.name, a.keep))
            );
        }
        if ds.tenant.is_some() && (ds.min_keep.is_some() || ds.max_keep.is_some()) {
            let a = x(ds.min_keep.map(hours).unwrap_or(1.0));
            let b = x(ds.max_keep.map(hours).unwrap_or(max_h * 1.3));
            let y = cy + 10.0;
            let _ = write!(
                s,
                r#"<g class="bounds"><title>{}</title><line x1="{a:.1}" y1="{y:.1}" x2="{b:.1}" y2="{y:.1}"/><line x1="{a:.1}" y1="{:.1}" x2="{a:.1}" y2="{:.1}"/><line x1="{b:.1}" y1="{:.1}" x2="{b:.1}" y2="{:.1}"/></g>"#,
                esc(&format!(
                    "{}: tenants may choose {} to {}",
                    ds.name,
                    ds.min_keep
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "any".into()),
                    ds.max_keep
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "any".into())
                )),
                y - 3.0,
                y + 3.0,
                y - 3.0,
                y + 3.0
            );
        }
        for o in overrides.get(ds.name.as_str()).into_iter().flatten() {
            let ox = x(hours(o.keep));
            let _ = write!(
                s,
                r#"<circle cx="{ox:.1}" cy="{cy:.1}" r="4.5" class="override"><title>{}</title></circle>"#,
                esc(&format!(
                    "{}: {} keeps {}",
                    ds.name,
                    who(&o.tenant, &o.environment),
                    o.keep
                ))
            );
        }
    }
    let ly = top + h + 38.0;
    let mut lx = left;
    for (class, text) in [
        ("bar within", "retention"),
        ("bar archive", "then in the archive"),
        ("override", "override"),
    ] {
        if class == "override" {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4.5" class="override"/>"#,
                lx + 5.0,
                ly - 4.0
            );
        } else {
            let _ = write!(
                s,
                r#"<rect x="{lx:.1}" y="{:.1}" width="10" height="10" class="{class}"/>"#,
                ly - 9.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{ly:.1}" class="legend">{text}</text>"#,
            lx + 14.0
        );
        lx += 14.0 + text.len() as f64 * 6.8 + 26.0;
    }
    let y = ly - 4.0;
    let _ = write!(
        s,
        r#"<g class="bounds"><line x1="{lx:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><line x1="{lx:.1}" y1="{:.1}" x2="{lx:.1}" y2="{:.1}"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}"/></g><text x="{:.1}" y="{ly:.1}" class="legend">tenant bounds</text><text x="{:.1}" y="{ly:.1}" class="note" text-anchor="end">log scale</text></svg>"#,
        lx + 22.0,
        y - 3.0,
        y + 3.0,
        lx + 22.0,
        y - 3.0,
        lx + 22.0,
        y + 3.0,
        lx + 28.0,
        left + w,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_characters() {
        assert_eq!(
            esc(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(221.6), 250.0);
        assert_eq!(nice_step(12.0), 20.0);
        assert_eq!(nice_step(500.0), 500.0);
    }
}
