//! The policy-wide rows: the allowed environments, `retention.config`,
//! policy overrides, legal holds and subjects, each written or removed with a comment
//! naming the rule and where the policy says it. Pure functions, no I/O.

use crate::model::{Hold, Override, Policy};
use crate::words;

use super::dataset::index;
use super::text::{comment, lit};
use super::{interval, opt_lit, rule};

/// The allowed environments.
pub fn environments(envs: &[String]) -> String {
    let mut s = if envs.is_empty() {
        String::from("-- the allowed environment values: none declared in the policy, so any value is accepted\n")
    } else {
        String::from("-- the allowed environment values (the policy's `environments`)\n")
    };
    s.push_str("DELETE FROM retention.environment");
    if !envs.is_empty() {
        s.push_str(&format!(
            " WHERE name NOT IN ({})",
            envs.iter().map(|e| lit(e)).collect::<Vec<_>>().join(", ")
        ));
    }
    s.push_str(";\n");
    for e in envs {
        s.push_str(&format!(
            "INSERT INTO retention.environment (name) VALUES ({}) ON CONFLICT DO NOTHING;\n",
            lit(e)
        ));
    }
    s
}

/// The policy-wide settings row (`retention.config`).
pub fn config(policy: &Policy) -> String {
    format!(
        "-- run_log_keep: retention.run_log keeps each run's record for {}; the runs remove older ones ({})\nUPDATE retention.config SET run_log_keep = {};\n",
        policy.run_log_keep,
        policy
            .run_log_keep_source
            .as_ref()
            .map(|s| comment(&s.to_string()))
            .unwrap_or_else(|| "the default: the policy does not set run_log_keep".into()),
        interval(policy.run_log_keep)
    )
}

/// "tenant bot-42, environment live", or "everything": whom a rule covers,
/// in the migrations' comments and change lists (free text: comments make
/// it safe).
pub fn who(tenant: Option<&str>, env: Option<&str>) -> String {
    words::who(tenant, env).unwrap_or_else(|| "everything".into())
}

/// Upsert a policy override.
pub fn override_upsert(o: &Override) -> String {
    format!(
        "{}INSERT INTO retention.policy_override (dataset, tenant, environment, keep, reason, source)\n    VALUES ({}, {}, {}, {}, {}, {})\n    ON CONFLICT (dataset, tenant, environment) DO UPDATE\n    SET keep = EXCLUDED.keep, reason = EXCLUDED.reason, source = EXCLUDED.source;\n",
        rule(&o.dataset, &format!("override for {}: keep {}", who(o.tenant.as_deref(), o.environment.as_deref()), o.keep), &o.source),
        lit(&o.dataset),
        opt_lit(o.tenant.as_deref()),
        opt_lit(o.environment.as_deref()),
        interval(o.keep),
        opt_lit(o.reason.as_deref()),
        lit(&o.source.to_string()),
    )
}

/// Remove a policy override.
pub fn override_delete(o: &Override) -> String {
    format!(
        "-- {}: override for {} removed from the policy (was at {})\nDELETE FROM retention.policy_override\n WHERE dataset = {} AND tenant IS NOT DISTINCT FROM {} AND environment IS NOT DISTINCT FROM {};\n",
        o.dataset,
        comment(&who(o.tenant.as_deref(), o.environment.as_deref())),
        comment(&o.source.to_string()),
        lit(&o.dataset),
        opt_lit(o.tenant.as_deref()),
        opt_lit(o.environment.as_deref()),
    )
}

/// Upsert a hold for one dataset.
pub fn hold_upsert(h: &Hold, dataset: &str) -> String {
    format!(
        "{}INSERT INTO retention.hold (dataset, tenant, environment, until, reason, source)\n    VALUES ({}, {}, {}, {}, {}, {})\n    ON CONFLICT (dataset, tenant, environment, reason) DO UPDATE\n    SET until = EXCLUDED.until, source = EXCLUDED.source;\n",
        rule(dataset, &format!("legal hold on {}{}: {}", who(h.tenant.as_deref(), h.environment.as_deref()), h.until.as_ref().map(|u| format!(" until {u}")).unwrap_or_default(), h.reason), &h.source),
        lit(dataset),
        opt_lit(h.tenant.as_deref()),
        opt_lit(h.environment.as_deref()),
        h.until.as_ref().map(|u| format!("date {}", lit(u))).unwrap_or_else(|| "NULL".into()),
        lit(&h.reason),
        lit(&h.source.to_string()),
    )
}

/// Remove a hold from one dataset.
pub fn hold_delete(h: &Hold, dataset: &str) -> String {
    format!(
        "-- {dataset}: legal hold on {} ({}) removed from the policy (was at {}); its rows are enforced at the next run\nDELETE FROM retention.hold\n WHERE dataset = {} AND tenant IS NOT DISTINCT FROM {} AND environment IS NOT DISTINCT FROM {} AND reason = {};\n",
        comment(&who(h.tenant.as_deref(), h.environment.as_deref())),
        comment(&h.reason),
        comment(&h.source.to_string()),
        lit(dataset),
        opt_lit(h.tenant.as_deref()),
        opt_lit(h.environment.as_deref()),
        lit(&h.reason),
    )
}

/// The policy's `subjects`, whole (`retention.subject`, one row per subject
/// and dataset): rows the policy no longer has go, the others are written.
/// Each (dataset, column) a subject erases by gets the index erasure uses,
/// on the table and its archive, unless `indexed` says it has one already
/// (the dataset's erase_by index, or one an earlier migration made).
pub fn subjects(policy: &Policy, indexed: &dyn Fn(&str, &str) -> bool) -> String {
    let mut s = String::from(
        "-- subjects, for `pgretain erase --subject NAME KEY`: rows the policy's `subjects` no longer has go\n",
    );
    let rows: Vec<String> = policy
        .subjects
        .iter()
        .flat_map(|sub| {
            sub.datasets
                .iter()
                .map(|(d, _)| format!("({}::text, {}::text)", lit(&sub.name), lit(d)))
        })
        .collect();
    s.push_str("DELETE FROM retention.subject");
    if !rows.is_empty() {
        s.push_str(&format!(
            "\n WHERE (name, dataset) NOT IN ({})",
            rows.join(", ")
        ));
    }
    s.push_str(";\n");
    for sub in &policy.subjects {
        let over: Vec<String> = sub
            .datasets
            .iter()
            .map(|(d, c)| format!("{d}.{c}"))
            .collect();
        s.push_str(&format!(
            "-- subject {}: {} ({})\n",
            sub.name,
            over.join(", "),
            comment(&sub.source.to_string())
        ));
        for (d, c) in &sub.datasets {
            s.push_str(&format!(
                "INSERT INTO retention.subject (name, dataset, column_name, source)\n    VALUES ({}, {}, {}, {})\n    ON CONFLICT (name, dataset) DO UPDATE\n    SET column_name = EXCLUDED.column_name, source = EXCLUDED.source;\n",
                lit(&sub.name),
                lit(d),
                lit(c),
                lit(&sub.source.to_string()),
            ));
        }
    }
    let mut done: Vec<(&str, &str)> = Vec::new();
    for sub in &policy.subjects {
        for (d, c) in &sub.datasets {
            let Some(ds) = policy.dataset(d) else {
                continue;
            };
            if done.contains(&(d.as_str(), c.as_str()))
                || ds.erase_by.as_deref() == Some(c.as_str())
                || indexed(d, c)
            {
                continue;
            }
            done.push((d, c));
            s.push_str(&format!(
                "\n-- {d}: subject `{}` erases by `{c}`: index what erasure matches ({})\n",
                sub.name,
                comment(&sub.source.to_string())
            ));
            s.push_str(&index(&ds.schema, &ds.table, &[c]));
            if let Some(a) = &ds.archive {
                s.push_str(&index(&a.schema, &ds.table, &[c]));
            }
        }
    }
    s
}
