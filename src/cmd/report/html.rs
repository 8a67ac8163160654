//! The report as one self-contained HTML page: inline CSS and the SVG
//! charts of `svg`, no script, no network, so it renders offline and can be
//! archived as evidence. Pure functions, no I/O.

use std::fmt::Write as _;

use super::gather::{Report, RUNS_CHARTED};
use super::prose::{
    day, evidence_sentences, policy_in_words, run_cells, status, summary_rows, when, RUN_HEADERS,
};
use super::svg::{esc, svg_ages, svg_retention, svg_runs};

/// Escape, then show `code` spans (from the words) as <code>.
fn esc_code(s: &str) -> String {
    let mut out = String::new();
    for (i, part) in s.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", esc(part));
        } else {
            out.push_str(&esc(part));
        }
    }
    out
}

const CSS: &str = r#"
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --card: #ffffff; --bg: #f6f7f9;
        --ok: #0f766e; --warn: #b45309; --bad: #b91c1c; --within: #3b82f6; --past: #dc2626; --held: #7c3aed; --archive: #93c5fd; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 18px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
p.meta { color: var(--muted); margin: 0 0 16px; }
.notice { border-left: 4px solid var(--warn); background: #fffbeb; padding: 10px 14px; margin: 12px 0 20px; border-radius: 4px; }
section.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 20px 22px; margin: 18px 0; break-inside: avoid-page; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafafa; }
table.runs td:first-child, table.summary td:nth-child(4), table.summary td:nth-child(7), table.summary td:nth-child(8) { white-space: nowrap; }
table.runs th { white-space: normal; }
.scroll { overflow-x: auto; }
table.runs td:last-child { color: var(--muted); font-size: 12px; }
dl.policy { display: grid; grid-template-columns: 170px 1fr; gap: 4px 16px; margin: 0; }
dl.policy dt { color: var(--muted); font-weight: 600; }
dl.policy dd { margin: 0; }
dl.policy ul { margin: 0; padding-left: 18px; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6; padding: 1px 4px; border-radius: 3px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 12px; font-weight: 600; white-space: nowrap; }
.badge.ok { background: #ccfbf1; color: var(--ok); } .badge.warn { background: #fef3c7; color: var(--warn); }
.badge.bad { background: #fee2e2; color: var(--bad); } .badge.none { background: #e5e7eb; color: var(--muted); }
.head { display: flex; justify-content: space-between; align-items: baseline; gap: 12px; }
ul.facts { margin: 0; padding-left: 18px; }
.charts { display: grid; grid-template-columns: 1fr; gap: 8px; }
.chart-box { margin: 6px 0 4px; }
.chart-box figcaption { color: var(--muted); font-size: 12px; margin-bottom: 2px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: #eef0f3; stroke-width: 1; }
svg .axis { stroke: #9ca3af; stroke-width: 1; }
svg .zero { stroke: var(--ok); stroke-width: 2; }
svg .tick { fill: var(--muted); font-size: 10.5px; }
svg .label, svg .note { fill: var(--muted); font-size: 11.5px; }
svg .legend { fill: var(--ink); font-size: 11.5px; }
svg .name { fill: var(--ink); font-size: 12.5px; font-weight: 600; }
svg .empty { fill: #fafafa; stroke: var(--line); }
svg .bar.ok { fill: var(--ok); } svg .bar.warn { fill: #f59e0b; } svg .bar.bad { fill: var(--bad); }
svg .bar.within, svg .within { fill: var(--within); } svg .bar.past { fill: var(--past); }
svg .bar.held { fill: var(--held); } svg .bar.archive, svg .archive { fill: var(--archive); }
svg .override { fill: #f59e0b; stroke: #fff; stroke-width: 1.5; }
svg .bounds line { stroke: var(--ink); stroke-width: 1.2; }
svg .deadline { stroke: var(--ink); stroke-width: 1.5; stroke-dasharray: 5 3; }
svg .deadline-label { fill: var(--ink); font-size: 11px; font-weight: 600; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
@media print { body { background: #fff; } section.card { border-color: #ccc; } }
"#;

/// A table; `escape: false` when the cells are HTML already.
fn html_table(
    out: &mut String,
    class: &str,
    headers: &[&str],
    numeric: &[usize],
    rows: &[Vec<String>],
    escape: bool,
) {
    let _ = write!(out, "<table class=\"{class}\"><thead><tr>");
    for (i, h) in headers.iter().enumerate() {
        let class = if numeric.contains(&i) {
            " class=\"num\""
        } else {
            ""
        };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if numeric.contains(&i) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(
                out,
                "<td{class}>{}</td>",
                if escape { esc(c) } else { c.clone() }
            );
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>\n");
}

/// The report as one self-contained HTML page.
pub fn html(r: &Report) -> String {
    let today = day(r.generated_at);
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(s, "<title>Data retention report — {}</title>", esc(&today));
    let _ = writeln!(s, "<style>{CSS}</style>\n</head>\n<body>\n<main>");
    let _ = writeln!(s, "<h1>Data retention report</h1>");
    let _ = writeln!(
        s,
        "<p class=\"meta\">Generated {} by pgretain from {}.{}</p>",
        esc(&when(r.generated_at)),
        esc(&r.policy_source),
        r.database
            .as_ref()
            .map(|d| format!(" Evidence read from {} in one snapshot.", esc(&d.name)))
            .unwrap_or_default()
    );
    match &r.database {
        None => s.push_str("<div class=\"notice\"><strong>Policy only.</strong> No database was given (<code>--database-url</code> or <code>DATABASE_URL</code>), so this report shows what the policy says, not evidence that it is enforced.</div>\n"),
        Some(db) if !db.deployed => s.push_str("<div class=\"notice\"><strong>pgretain has not been applied to this database</strong>: nothing in it is enforced.</div>\n"),
        Some(_) => {}
    }

    s.push_str("<section class=\"card\"><h2>Summary</h2>\n");
    let (rows, badges): (Vec<Vec<String>>, Vec<(String, &str)>) =
        summary_rows(r, |run| run.started_at.format("%Y-%m-%d %H:%M").to_string())
            .into_iter()
            .unzip();
    let mut table = String::new();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .zip(&badges)
        .map(|(row, (text, tone))| {
            let mut cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
            cells[0] = format!("<a href=\"#{}\">{}</a>", esc(&row[0]), esc(&row[0]));
            if r.database.is_some() {
                cells.push(format!("<span class=\"badge {tone}\">{}</span>", esc(text)));
            }
            cells
        })
        .collect();
    if r.database.is_some() {
        html_table(
            &mut table,
            "summary",
            &[
                "Dataset",
                "Table",
                "Retention",
                "On expiry",
                "Rows",
                "Overdue now",
                "Last run (UTC)",
                "Status",
            ],
            &[4, 5],
            &cells,
            false,
        );
    } else {
        html_table(
            &mut table,
            "summary",
            &["Dataset", "Table", "Retention", "On expiry", "Owner"],
            &[],
            &cells,
            false,
        );
    }
    s.push_str("<div class=\"scroll\">");
    s.push_str(&table);
    s.push_str("</div>\n<h3>Retention at a glance</h3>\n<figure class=\"chart-box\">");
    s.push_str(&svg_retention(&r.policy));
    s.push_str("</figure>\n</section>\n");

    for ds in &r.policy.datasets {
        let e = r.database.as_ref().and_then(|d| d.datasets.get(&ds.name));
        let (text, tone) = status(e, r.database.as_ref());
        let _ = writeln!(
            s,
            "<section class=\"card\" id=\"{}\"><div class=\"head\"><h2>{}</h2><span class=\"badge {tone}\">{}</span></div>",
            esc(&ds.name),
            esc(&ds.name),
            esc(&text)
        );
        s.push_str("<h3>Policy</h3>\n<dl class=\"policy\">");
        for (label, lines) in policy_in_words(&r.policy, ds, &today) {
            let _ = write!(s, "<dt>{}</dt><dd>", esc(label));
            if lines.len() == 1 {
                s.push_str(&esc_code(&lines[0]));
            } else {
                s.push_str("<ul>");
                for l in &lines {
                    let _ = write!(s, "<li>{}</li>", esc_code(l));
                }
                s.push_str("</ul>");
            }
            s.push_str("</dd>");
        }
        s.push_str("</dl>\n");
        if let Some(db) = &r.database {
            s.push_str("<h3>Evidence</h3>\n");
            match e {
                None => {
                    let _ = writeln!(
                        s,
                        "<p>Not enforced in {}: <code>pgretain apply</code> has not created this dataset there.</p>",
                        esc(&db.name)
                    );
                }
                Some(e) => {
                    s.push_str("<ul class=\"facts\">");
                    for line in evidence_sentences(e, r.generated_at) {
                        let _ = write!(s, "<li>{}</li>", esc(&line));
                    }
                    s.push_str("</ul>\n<div class=\"charts\">");
                    let _ = write!(
                        s,
                        "<figure class=\"chart-box\"><figcaption>Age of the stored rows against the deadline</figcaption>{}</figure>",
                        svg_ages(ds, e)
                    );
                    let _ = write!(
                        s,
                        "<figure class=\"chart-box\"><figcaption>Rows removed per enforcement run (last {RUNS_CHARTED})</figcaption>{}</figure>",
                        svg_runs(&ds.name, &e.history, e.archives)
                    );
                    s.push_str("</div>\n");
                    let _ = writeln!(s, "<h3>Last runs (retention.run_log)</h3>");
                    if e.runs.is_empty() {
                        s.push_str("<p>No runs recorded yet.</p>\n");
                    } else {
                        let rows: Vec<Vec<String>> =
                            e.runs.iter().map(|r| run_cells(r, e.archives)).collect();
                        s.push_str("<div class=\"scroll\">");
                        html_table(&mut s, "runs", &RUN_HEADERS, &[3, 4, 5, 6, 7], &rows, true);
                        s.push_str("</div>\n");
                    }
                }
            }
        }
        s.push_str("</section>\n");
    }
    let _ = writeln!(
        s,
        "<footer>Deadlines are computed as the database computes them: the row's time (UTC) plus the retention in force for its tenant and environment. A run removes exactly the rows whose deadline is before its start, unless a legal hold covers them. This file is self-contained and needs no network.</footer>"
    );
    s.push_str("</main>\n</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_are_escaped() {
        assert_eq!(esc_code("by `id` <x>"), "by <code>id</code> &lt;x&gt;");
    }
}
