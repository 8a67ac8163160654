//! `pgretain plan` and `pgretain report` against a real PostgreSQL 15 with
//! pg_cron: plan's counts are exactly what the following run removes, and
//! the report is one well-formed, self-contained HTML file (plus Markdown)
//! showing every dataset with its charts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::deploy::Deployed;
use pgretain::cmd::compile::{compile, CompileOptions, CompileOutcome};
use pgretain::cmd::plan::{plan, PlanOptions};
use pgretain::cmd::report::gather::build;
use pgretain::cmd::report::html::html;
use pgretain::cmd::report::markdown::markdown;
use pgretain::cmd::report::{report, ReportOptions, ReportOutput};
use postgres::Client;

impl Deployed {
    /// Compile a changed policy; returns the migration written.
    fn compile_new(&self, policy_yaml: &str) -> String {
        match self.compile(policy_yaml) {
            CompileOutcome::Written { file, .. } => file,
            other => panic!("expected a new migration, got {other:?}"),
        }
    }

    fn plan_opts(&self) -> PlanOptions {
        PlanOptions {
            database_url: Some(self.url.clone()),
            generated_dir: self.generated.path().to_path_buf(),
            count_timeout: Duration::from_secs(30),
        }
    }

    fn pgretain(&self, args: &[&str]) -> std::process::Output {
        Command::new(common::pgretain_bin())
            .args(args)
            .args(["--database-url", &self.url])
            .arg("--generated")
            .arg(self.generated.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    }
}

const EVENTS: &str = r#"
version: 1
datasets:
  events:
    description: Test events.
    table: app.events
    columns:
      id: bigint generated always as identity
      label: text not null
      bot_id: text not null
      at: timestamptz not null
    time: at
    tenant: bot_id
    keep: 30 days
    partition: day
holds:
  - tenant: "bot-7"
    reason: "litigation hold 2026-14"
"#;

/// Insert `n` rows of tenant `bot` aged `days` days (plus a few minutes each).
fn events(c: &mut Client, bot: &str, days: i32, n: i32) {
    c.execute(
        "INSERT INTO app.events (label, bot_id, at)
         SELECT format('%s %s days #%s', $1::text, $2::int, i), $1, now() - make_interval(days => $2) - make_interval(mins => i)
           FROM generate_series(1, $3::int) AS i",
        &[&bot, &days, &n],
    )
    .unwrap();
}

fn backfill(c: &mut Client, dataset: &str, days: i32) {
    c.batch_execute(&format!(
        "SELECT retention.create_partition('{dataset}', d)
           FROM generate_series(date_trunc('day', now() - interval '{days} days', 'UTC'), now(), interval '1 day') AS d"
    ))
    .unwrap();
}

#[test]
fn plan_counts_exactly_what_the_next_run_removes() {
    let d = Deployed::new(EVENTS);
    let mut c = d.app();
    backfill(&mut c, "events", 60);
    events(&mut c, "bot-1", 5, 3);
    events(&mut c, "bot-1", 20, 4);
    events(&mut c, "bot-2", 25, 2);
    events(&mut c, "bot-3", 18, 1);
    events(&mut c, "bot-7", 20, 5); // held: never counted, never removed
    events(&mut c, "bot-1", 40, 6); // expired under the current policy already

    // Nothing pending: plan still counts the next run.
    let p = plan(&d.plan_opts()).unwrap_or_else(|e| panic!("{e}"));
    assert!(p.migrations.is_empty());
    let text = p.to_string();
    assert!(text.contains("No pending migrations"), "{text}");
    assert!(
        text.contains("events: the next run removes 6 rows of 1 tenant"),
        "{text}"
    );
    d.run_job("events");
    assert_eq!(d.count("app.events"), 15);

    // Shorten keep to 15 days: compiled (V2), not applied.
    let file = d.compile_new(&EVENTS.replace("keep: 30 days", "keep: 15 days"));
    assert!(file.starts_with("V2__"), "{file}");
    let p = plan(&d.plan_opts()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(p.migrations.len(), 1);
    assert_eq!(p.migrations[0].name, file.trim_end_matches(".sql"));
    assert!(p.migrations[0].title.starts_with("V2: "));
    assert!(
        p.migrations[0]
            .summary()
            .contains("events: keep 30 days -> 15 days"),
        "{}",
        p.migrations[0].summary()
    );
    assert!(p.migrations[0].sql.contains("INSERT INTO"));
    let impact = &p.datasets[0];
    let next = impact.next.expect("a count under the new policy");
    let now = impact.now.expect("a count under the current state");
    assert_eq!((now.rows, now.estimated), (0, false));
    // bot-1 20 days (4), bot-2 25 days (2), bot-3 18 days (1); not bot-7 (held).
    assert_eq!(
        (next.rows, next.tenants, next.estimated),
        (7, Some(3), false)
    );
    let text = p.to_string();
    assert!(
        text.contains("events: shortening keep from 30 days to 15 days removes 7 rows of 3 tenants at the next run (now: 0)"),
        "{text}"
    );
    assert!(text.contains("events: keep 30 days -> 15 days"), "{text}");
    // Plan rolled everything back: the database still has the old policy.
    let keep: String = c
        .query_one("SELECT keep::text FROM retention.dataset", &[])
        .unwrap()
        .get(0);
    assert_eq!(keep, "30 days");

    // Apply and run the job: exactly N rows go.
    d.apply();
    c.batch_execute("ANALYZE app.events").unwrap();
    let before = d.count("app.events");
    d.run_job("events");
    let after = d.count("app.events");
    assert_eq!(before - after, next.rows);
    let (deleted, in_dropped): (i64, i64) = c
        .query_one(
            "SELECT rows_deleted, rows_in_dropped FROM retention.run_log
              WHERE dataset = 'events' AND action = 'enforce' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(deleted + in_dropped, next.rows);

    // And now nothing is pending and nothing would be removed.
    let p = plan(&d.plan_opts()).unwrap();
    assert!(p.migrations.is_empty() && !p.removes_rows(), "{p}");
}

#[test]
fn fail_if_removes_exits_1_through_the_binary() {
    let d = Deployed::new(EVENTS);
    let mut c = d.app();
    events(&mut c, "bot-1", 45, 2);
    events(&mut c, "bot-1", 1, 1);

    let out = d.pgretain(&["plan", "--fail-if-removes"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("events: the next run removes 2 rows of 1 tenant"),
        "{stdout}"
    );
    // Without the flag, plan reports and succeeds.
    assert_eq!(d.pgretain(&["plan"]).status.code(), Some(0));

    d.run_job("events");
    let out = d.pgretain(&["plan", "--fail-if-removes"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("removes no rows"));

    // A database that cannot be reached: exit 3.
    let out = Command::new(common::pgretain_bin())
        .args([
            "plan",
            "--database-url",
            "host=/nonexistent port=1 user=x dbname=x",
        ])
        .arg("--generated")
        .arg(d.generated.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn plan_shows_a_new_dataset_and_falls_back_to_an_estimate_on_timeout() {
    let d = Deployed::new(EVENTS);
    let mut c = d.app();
    // Enough rows that counting them cannot finish within a millisecond.
    c.batch_execute(
        "INSERT INTO app.events (label, bot_id, at)
         SELECT 'bulk', 'bot-' || (i % 50), now() - interval '40 days' - make_interval(secs => i)
           FROM generate_series(1, 200000) AS i;
         ANALYZE app.events",
    )
    .unwrap();
    let more = EVENTS.replace(
        "holds:",
        "  audit:\n    description: Audit trail.\n    table: app.audit\n    columns:\n      id: bigint generated always as identity\n      at: timestamptz not null\n    time: at\n    keep: 1 year\nholds:",
    );
    d.compile_new(&more);
    let p = plan(&PlanOptions {
        count_timeout: Duration::from_millis(1),
        ..d.plan_opts()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let text = p.to_string();
    let events = p.datasets.iter().find(|x| x.dataset == "events").unwrap();
    assert!(events.next.unwrap().estimated, "{text}");
    assert!(events.next.unwrap().rows > 0, "{text}");
    assert!(
        text.contains("≈") && text.contains("estimate: counting took longer than 1 ms"),
        "{text}"
    );
    let audit = p.datasets.iter().find(|x| x.dataset == "audit").unwrap();
    assert_eq!(audit.now, None);
    assert!(text.contains("(now: not deployed)"), "{text}");
    // With the default timeout, the same plan reads as many candidate rows
    // as a count may (db::expired::EXAMINE_BUDGET, 100,000: rows 1 to
    // 100,000, of which bot-7's 2,000 are held) and estimates the rest
    // from the share it saw, labelled so; it claims no tenant count.
    // bot-7 (i % 50 = 7) is under the hold: 4,000 of the 200,000 stay.
    let p = plan(&d.plan_opts()).unwrap();
    let events = p.datasets.iter().find(|x| x.dataset == "events").unwrap();
    let next = events.next.unwrap();
    assert!(next.estimated && !next.timed_out, "{next:?}");
    assert_eq!(next.counted, 98_000, "{next:?}");
    assert!((next.rows - 196_000).abs() <= 2_000, "{next:?}");
    assert_eq!(next.tenants, None);
    let text = p.to_string();
    assert!(text.contains("(estimate; 98,000 counted)"), "{text}");
}

// ---------------------------------------------------------------------------
// report
// ---------------------------------------------------------------------------

/// Elements that never have a closing tag.
const VOID: &[&str] = &["meta", "br", "hr", "img", "link", "input", "col", "wbr"];

/// A tiny well-formedness check: every element is closed, in order; text
/// never holds a raw `<`; `<style>` content is skipped.
fn check_well_formed(html: &str) -> Result<(), String> {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i..];
        if rest.starts_with("<!--") {
            let end = rest.find("-->").ok_or("unclosed comment")?;
            rest = &rest[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("unclosed tag")?;
        let tag = &rest[1..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or(format!("</{name}> closes nothing"))?;
            if open != name.trim() {
                return Err(format!("</{name}> closes <{open}>"));
            }
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if name.is_empty() {
            return Err(format!("not a tag: <{tag}>"));
        }
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        if name == "style" {
            let close = rest.find("</style>").ok_or("unclosed <style>")?;
            rest = &rest[close + "</style>".len()..];
            continue;
        }
        stack.push(name);
    }
    if stack.is_empty() {
        Ok(())
    } else {
        Err(format!("unclosed elements: {stack:?}"))
    }
}

#[test]
fn the_well_formedness_check_catches_mistakes() {
    assert!(check_well_formed("<p><b>x</b></p><br>").is_ok());
    assert!(check_well_formed("<p><b>x</p></b>").is_err());
    assert!(check_well_formed("<p>a < b</p>").is_err());
    assert!(check_well_formed("<div>").is_err());
}

/// Rows of known ages in every dataset of the example policy, and a
/// history of runs at pinned times.
fn fill_example(d: &Deployed) {
    let mut c = d.app();
    c.batch_execute(
        "INSERT INTO app.conversations (bot_id, environment, conversation_id, channel, started_at, transcript)
         SELECT 'bot-' || (i % 12), CASE WHEN i % 4 = 0 THEN 'draft' ELSE 'live' END, gen_random_uuid(), 'web',
                now() - make_interval(days => (i * 7) % 820, hours => i % 24),
                '[{\"text\": \"hi\", \"password\": \"never stored\"}]'
           FROM generate_series(1, 3000) AS i;
         INSERT INTO app.sessions (bot_id, environment, conversation_id, last_activity_at)
         SELECT 'bot-' || (i % 12), 'live', gen_random_uuid(), now() - make_interval(days => i % 70)
           FROM generate_series(1, 1500) AS i;
         INSERT INTO app.error_logs (bot_id, environment, integration, occurred_at, status_code)
         SELECT 'bot-' || (i % 5), 'live', 'crm', now() - make_interval(days => (i * 3) % 500), 500
           FROM generate_series(1, 800) AS i;",
    )
    .unwrap();
    // Runs at pinned times T over the last three weeks, then today's run.
    for ds in ["conversations", "sessions", "error_logs"] {
        for days_ago in [21, 14, 10, 7, 3] {
            c.batch_execute(&format!(
                "CALL retention.\"enforce_{ds}\"(p_now => now() - interval '{days_ago} days')"
            ))
            .unwrap();
        }
    }
    d.run_job("error_logs");
    // A description that needs escaping.
    c.batch_execute("ANALYZE").unwrap();
}

fn example_deployed() -> Deployed {
    let yaml = std::fs::read_to_string("policies/chatbot.yaml").unwrap();
    let yaml = yaml.replace(
        "reason: \"litigation hold 2026-14\"",
        "reason: \"litigation hold 2026-14 <Smith & O'Brien> \\\"urgent\\\"\"",
    );
    Deployed::new(&yaml)
}

#[test]
fn report_html_is_self_contained_well_formed_and_complete() {
    let d = example_deployed();
    fill_example(&d);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    let done = report(&ReportOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated.path().to_path_buf(),
        policy_dir: None,
        out: Some(out.clone()),
        now: None,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let md_path = dir.path().join("report.md");
    assert_eq!(
        done,
        ReportOutput::Files(vec![out.clone(), md_path.clone()])
    );
    let html = std::fs::read_to_string(&out).unwrap();
    let md = std::fs::read_to_string(&md_path).unwrap();
    if let Some(keep) = std::env::var_os("PGRETAIN_KEEP_REPORT") {
        // For looking at it: PGRETAIN_KEEP_REPORT=/tmp/r cargo test --test plan_report
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&out, keep.join("report.html")).unwrap();
        std::fs::copy(&md_path, keep.join("report.md")).unwrap();
    }

    check_well_formed(&html).unwrap_or_else(|e| panic!("{e}"));
    assert!(html.starts_with("<!DOCTYPE html>"));
    let datasets = [
        "conversations",
        "sessions",
        "error_logs",
        "training_expressions",
    ];
    for ds in datasets {
        assert!(html.contains(&format!("id=\"{ds}\"")), "{ds} section");
        assert!(md.contains(&format!("## {ds}")), "{ds} in the markdown");
        // The command the job really runs (regression: it was unquoted).
        let job: String = d
            .cluster
            .client("postgres")
            .query_one(
                "SELECT command FROM cron.job WHERE jobname = $1",
                &[&format!("pgretain:app:{ds}")],
            )
            .unwrap()
            .get(0);
        assert!(
            md.contains(&format!("job command `{job}`")),
            "{ds}: the report shows `{job}`"
        );
    }
    // One chart of each kind per dataset, one overview.
    assert_eq!(html.matches("class=\"chart chart-runs\"").count(), 4);
    assert_eq!(html.matches("class=\"chart chart-ages\"").count(), 4);
    assert_eq!(html.matches("class=\"chart chart-retention\"").count(), 1);
    assert_eq!(html.matches("<svg").count(), 9);
    // Renders offline: no network references, no script.
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script") && !html.contains("src="));
    assert!(!html.contains("@import") && !html.contains("url("));
    // Escaped properly.
    assert!(
        html.contains("litigation hold 2026-14 &lt;Smith &amp; O&#39;Brien&gt; &quot;urgent&quot;")
    );
    assert!(!html.contains("<Smith"));
    // The evidence is there.
    assert!(html.contains("Last runs (retention.run_log)"));
    assert!(md.contains("Rows overdue now"));
    assert!(md.contains("Oldest row:"));
    assert!(md.contains("deadline: retention") || html.contains("deadline: retention 365 days"));
    assert!(md.contains("| Started | Action | Outcome |"));
}

#[test]
fn report_counts_agree_with_the_expired_views() {
    let d = example_deployed();
    fill_example(&d);
    let r = build(&ReportOptions {
        database_url: Some(d.url.clone()),
        generated_dir: d.generated.path().to_path_buf(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let db = r.database.as_ref().expect("evidence");
    assert!(db.deployed);
    let mut c = d.app();
    for (name, e) in &db.datasets {
        let (rows, expired): (i64, i64) = c
            .query_one(
                &format!(
                    "SELECT (SELECT count(*) FROM app.{name}), (SELECT count(*) FROM retention.expired_{name})"
                ),
                &[],
            )
            .map(|r| (r.get(0), r.get(1)))
            .unwrap();
        assert_eq!(e.total_rows, rows, "{name}");
        assert_eq!(e.past_deadline, expired, "{name}");
    }
    let conv = &db.datasets["conversations"];
    // bot-7 is under a hold: its old conversations are kept past their deadline.
    assert!(conv.held_past_deadline > 0);
    assert_eq!(conv.history.len(), 5);
    assert!(conv.history.iter().any(|r| r.removed(true) > 0));
    assert!(conv.oldest.as_ref().unwrap().held);
    // The markdown printed without --out names every dataset.
    let md = markdown(&r);
    for ds in &r.policy.datasets {
        assert!(md.contains(&format!("## {}", ds.name)));
    }
    let _ = html(&r);
}

#[test]
fn report_without_a_database_shows_the_policy_alone() {
    let policy = Path::new("policies");
    let generated = tempfile::tempdir().unwrap();
    compile(&CompileOptions {
        policy_dir: policy.to_path_buf(),
        generated_dir: generated.path().to_path_buf(),
        check: false,
        allow_destructive: false,
    })
    .unwrap();
    // From the compiled state, through the binary, Markdown on stdout.
    let out = Command::new(common::pgretain_bin())
        .args(["report", "--generated"])
        .arg(generated.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("Policy only"), "{md}");
    for ds in [
        "conversations",
        "sessions",
        "error_logs",
        "training_expressions",
    ] {
        assert!(md.contains(&format!("## {ds}")), "{md}");
    }
    assert!(md.contains("litigation hold 2026-14"));
    assert!(md.contains("contract DPA-2026-042"));
    // From the policy directory, as HTML: the overview chart, no evidence charts.
    let r = build(&ReportOptions {
        policy_dir: Some(policy.to_path_buf()),
        generated_dir: PathBuf::from("/nonexistent"),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(r.database.is_none());
    let page = html(&r);
    check_well_formed(&page).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.matches("<svg").count(), 1);
    assert!(page.contains("Policy only"));
    // No compiled state and no --policies: exit 2.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(common::pgretain_bin())
        .args(["report", "--generated"])
        .arg(empty.path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
