//! Property test of the guarantee (SPEC §3): random policies (keeps,
//! overrides, holds, stamping), random run-time settings and random rows,
//! which between them reach every way a run treats a partition (dropped,
//! read page by page, read through the tenant index, its few held rows
//! copied out, alone or with its neighbours into one partition, the
//! default partition),
//! enforced by the real database; the rows left are compared with an oracle
//! written here, from the SPEC, independently of the compiler and of the
//! SQL. Over-deleted and under-deleted must both be zero in every case.
//!
//! Deterministic: a fixed seed per case (`PGRETAIN_PROPTEST_CASES` sets how
//! many policies; each checks every row at several run times).

mod common;

use common::oracle::{check_case, Case, Rng};
use common::Cluster;
use pgretain::cmd::apply::{apply, ApplyOptions};
use pgretain::cmd::compile::{compile, CompileOptions};

#[test]
fn random_policies_remove_exactly_the_expired_rows() {
    let cases: u64 = std::env::var("PGRETAIN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let cluster = Cluster::start();
    let mut checked_rows = 0usize;
    let mut removed_rows = 0usize;
    let (mut seen_copy, mut seen_index, mut seen_drop) = (false, false, false);
    let mut seen_merged = false;
    for case_no in 0..cases {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ (case_no + 1).wrapping_mul(0x1000_0000_01B3));
        let case = Case::random(&mut r);
        let db = format!("case{case_no}");
        let url = cluster.create_database(&db);
        let policy = tempfile::tempdir().unwrap();
        let generated = tempfile::tempdir().unwrap();
        std::fs::write(policy.path().join("p.yaml"), case.policy()).unwrap();
        compile(&CompileOptions {
            policy_dir: policy.path().to_path_buf(),
            generated_dir: generated.path().to_path_buf(),
            check: false,
            allow_destructive: false,
        })
        .unwrap_or_else(|e| panic!("case {case_no}: {e}\n{}", case.policy()));
        apply(&ApplyOptions {
            database_url: Some(url.clone()),
            generated_dir: generated.path().to_path_buf(),
            dry_run: false,
            cron_database: None,
        })
        .unwrap_or_else(|e| panic!("case {case_no}: {e}"));
        let mut c = cluster.client(&db);
        let seen = check_case(&mut c, case_no, &mut r, &case);
        for detail in &seen.details {
            seen_copy |= detail.contains("row(s) were copied to a new partition");
            seen_merged |= detail.contains("neighbouring ones were copied together");
            seen_index |= detail.contains("rows found through the tenant index");
            seen_drop |= !detail.ends_with(" dropped=0");
        }
        checked_rows += seen.rows;
        removed_rows += seen.removed;
    }
    eprintln!("{cases} random policies, {checked_rows} row checks, {removed_rows} rows removed: 0 over-deleted, 0 under-deleted");
    assert!(
        removed_rows > 0 && removed_rows < checked_rows,
        "the cases must remove some rows and keep others"
    );
    eprintln!("strategies reached: drop {seen_drop}, held rows copied out {seen_copy} (neighbours together {seen_merged}), tenant index {seen_index}");
    assert!(
        seen_copy && seen_merged && seen_index && seen_drop,
        "the cases must reach every strategy"
    );
}
