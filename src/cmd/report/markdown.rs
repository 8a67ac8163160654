//! The report as Markdown: the summary table, then per dataset its policy
//! in words and, with a database, the evidence, the age table and the last
//! runs. Pure functions, no I/O.

use std::fmt::Write as _;

use super::gather::Report;
use super::prose::{
    bucket_label, day, evidence_sentences, policy_in_words, run_cells, summary_rows, when,
    RUN_HEADERS,
};
use crate::words::thousands;

/// Prose for Markdown: angle brackets would be read as HTML.
fn md_text(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

fn md_table(out: &mut String, headers: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", headers.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let today = day(r.generated_at);
    let _ = writeln!(s, "# Data retention report\n");
    let _ = writeln!(
        s,
        "Generated {} by pgretain from {}.",
        when(r.generated_at),
        r.policy_source
    );
    match &r.database {
        None => {
            let _ = writeln!(
                s,
                "\n> **Policy only.** No database was given (`--database-url` or `DATABASE_URL`), so this report shows what the policy says, not evidence that it is enforced.\n"
            );
        }
        Some(db) => {
            let _ = writeln!(s, "Evidence read from {} in one snapshot.\n", db.name);
            if !db.deployed {
                let _ = writeln!(s, "> **pgretain has not been applied to this database**: nothing in it is enforced.\n");
            }
        }
    }
    let _ = writeln!(s, "## Summary\n");
    let rows: Vec<Vec<String>> = summary_rows(r, |run| {
        format!("{} ({})", when(run.started_at), run.outcome)
    })
    .into_iter()
    .map(|(mut row, badge)| {
        if r.database.is_some() {
            row.push(badge.0);
        }
        row
    })
    .collect();
    if r.database.is_some() {
        md_table(
            &mut s,
            &[
                "Dataset",
                "Table",
                "Retention",
                "On expiry",
                "Rows",
                "Overdue now",
                "Last run",
                "Status",
            ],
            &rows,
        );
    } else {
        md_table(
            &mut s,
            &["Dataset", "Table", "Retention", "On expiry", "Owner"],
            &rows,
        );
    }

    for ds in &r.policy.datasets {
        let _ = writeln!(s, "## {}\n", ds.name);
        let _ = writeln!(s, "### Policy\n");
        for (label, lines) in policy_in_words(&r.policy, ds, &today) {
            if lines.len() == 1 {
                let _ = writeln!(s, "- **{label}:** {}", md_text(&lines[0]));
            } else {
                let _ = writeln!(s, "- **{label}:**");
                for l in lines {
                    let _ = writeln!(s, "  - {}", md_text(&l));
                }
            }
        }
        s.push('\n');
        let Some(db) = &r.database else { continue };
        let _ = writeln!(s, "### Evidence\n");
        let Some(e) = db.datasets.get(&ds.name) else {
            let _ = writeln!(
                s,
                "Not enforced in this database: `pgretain apply` has not created it.\n"
            );
            continue;
        };
        for line in evidence_sentences(e, r.generated_at) {
            let _ = writeln!(s, "- {}", md_text(&line));
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "Age of the stored rows (retention {} marked by ◆):\n",
            ds.keep
        );
        let rows: Vec<Vec<String>> = e
            .buckets
            .iter()
            .map(|b| {
                let mark = match (b.from_days, b.to_days) {
                    (Some(a), Some(z)) if a < e.keep_days && e.keep_days <= z => " ◆",
                    _ => "",
                };
                vec![
                    format!("{}{mark}", bucket_label(b)),
                    thousands(b.rows),
                    thousands(b.past_deadline),
                    thousands(b.held),
                ]
            })
            .collect();
        md_table(
            &mut s,
            &["Age", "Rows", "Past deadline", "Held past deadline"],
            &rows,
        );
        if e.runs.is_empty() {
            let _ = writeln!(s, "No runs recorded in retention.run_log.\n");
        } else {
            let _ = writeln!(s, "Last runs (retention.run_log):\n");
            let rows: Vec<Vec<String>> = e.runs.iter().map(|r| run_cells(r, e.archives)).collect();
            md_table(&mut s, &RUN_HEADERS, &rows);
        }
    }
    s
}
