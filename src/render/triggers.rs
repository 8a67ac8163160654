//! A dataset's triggers, each with its SECURITY DEFINER function: sensitive
//! keys stripped on write, the retention stamped on insert
//! (`changes_apply_to: new_rows`), and a sliding clock that only moves
//! forward. Pure functions, no I/O.

use crate::model::{ChangesApplyTo, Clock, Dataset, STAMP_COLUMN};

use super::names::{relation, Trigger};
use super::text::{comment, dollar_quoted, ident, lit};

/// How far into the future a sliding clock may be moved by an update:
/// activity cannot happen later than now, give or take clock skew. A later
/// value is brought back to now plus this margin, with a warning.
pub const SLIDING_CEILING: &str = "1 hour";

/// A trigger function of the dataset: SECURITY DEFINER, so it runs as the
/// owner of schema retention whoever writes the row (the application has no
/// rights on the machinery it reads), with a pinned search_path. The body
/// is dollar-quoted with a tag it does not contain.
fn trigger_function(fname: &str, body: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {fname}()\nRETURNS trigger\nLANGUAGE plpgsql\nSECURITY DEFINER\nSET search_path = pg_catalog, pg_temp\nSET IntervalStyle = 'postgres'\nAS {};\n",
        dollar_quoted("body", body)
    )
}

/// Triggers: sensitive keys stripped, retention stamped, sliding clock.
pub fn triggers(ds: &Dataset) -> String {
    let mut s = String::new();
    let rel = relation(ds);
    let name = &ds.name;
    let src = comment(&ds.source.to_string());
    if !ds.sensitive.is_empty() {
        let fname = Trigger::StripSensitive.function(name);
        s.push_str(&format!(
            "\n-- {name}: sensitive values are stripped by the database on every write of their column, so they never reach disk ({src})\n"
        ));
        // What a write costs: an UPDATE that does not name a sensitive
        // column does not fire the trigger (UPDATE OF); one that leaves the
        // value as it was strips nothing; a value without any of the keys
        // (most writes) costs one scan of its text (may_have_keys), not a
        // rebuild; and a value that is, or once stripped is, the stored one
        // keeps the stored copy, so its TOAST is not written again.
        let mut decl = String::new();
        let mut checks = String::new();
        for (i, (col, keys)) in ds.sensitive.iter().enumerate() {
            let arr = keys.iter().map(|k| lit(k)).collect::<Vec<_>>().join(", ");
            let is_json = ds.column(col).is_some_and(|c| c.ty.sql_type == "json");
            let c = ident(col);
            let v = format!("v_stripped_{}", i + 1);
            decl.push_str(&format!("    {v} jsonb;\n"));
            let (cast, doc, back) = if is_json {
                ("::text", format!("NEW.{c}::jsonb"), "::json")
            } else {
                ("", format!("NEW.{c}"), "")
            };
            // Unchanged (the stored value was stripped when written): the
            // stored copy is kept, so that a value sent back as it was (an
            // ORM writing every column) does not write its TOAST again.
            let same = if is_json {
                format!("        NEW.{c} := OLD.{c};   -- the same text: the stored copy\n")
            } else {
                format!("        IF NEW.{c}::text IS NOT DISTINCT FROM OLD.{c}::text THEN\n            NEW.{c} := OLD.{c};   -- the same text: the stored copy\n        END IF;\n")
            };
            checks.push_str(&format!(
                "    IF TG_OP = 'UPDATE' AND NEW.{c}{cast} IS NOT DISTINCT FROM OLD.{c}{cast} THEN\n{same}    ELSIF retention.may_have_keys({doc}, ARRAY[{arr}]::text[]) THEN\n        {v} := retention.strip_keys({doc}, ARRAY[{arr}]::text[]);\n        IF TG_OP = 'UPDATE' AND {v}{back}::text IS NOT DISTINCT FROM OLD.{c}::text THEN\n            NEW.{c} := OLD.{c};   -- stripped, it is what is stored: the stored copy\n        ELSE\n            NEW.{c} := {v}{back};\n        END IF;\n    END IF;\n"
            ));
        }
        let mut body = format!("\nDECLARE\n{decl}BEGIN\n{checks}");
        body.push_str("    RETURN NEW;\nEND\n");
        s.push_str(&trigger_function(&fname, &body));
        let cols = ds
            .sensitive
            .iter()
            .map(|(c, _)| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!(
            "CREATE OR REPLACE TRIGGER {}\n    BEFORE INSERT OR UPDATE OF {cols} ON {rel}\n    FOR EACH ROW EXECUTE FUNCTION {fname}();\n",
            Trigger::StripSensitive.name()
        ));
    }
    if ds.changes_apply_to == ChangesApplyTo::NewRows {
        let fname = Trigger::StampKeep.function(name);
        let tenant = ds
            .tenant
            .as_ref()
            .map(|t| format!("NEW.{}::text", ident(t)))
            .unwrap_or_else(|| "NULL::text".into());
        let env = ds
            .environment
            .as_ref()
            .map(|t| format!("NEW.{}::text", ident(t)))
            .unwrap_or_else(|| "NULL::text".into());
        s.push_str(&format!(
            "\n-- {name}: changes_apply_to: new_rows: each row is stamped with the retention in force\n-- when it was inserted, and keeps it; what the application sends is ignored ({src})\n"
        ));
        let body = format!(
            "\nBEGIN\n    IF TG_OP = 'UPDATE' THEN\n        NEW.{stamp} := OLD.{stamp};   -- a row keeps its stamp for life\n    ELSIF NEW.{stamp} IS NULL OR NOT EXISTS (\n            SELECT 1 FROM retention.keep_history h\n             WHERE h.dataset = {l}::text AND h.keep_text = NEW.{stamp}::text) THEN\n        -- A new row: the retention in force now, whatever the INSERT said.\n        -- (A row an UPDATE moves to another partition arrives here as an\n        -- INSERT carrying its stamp, a value the dataset has given: kept.)\n        NEW.{stamp} := retention.keep_for({l}::text, {tenant}, {env});\n    END IF;\n    RETURN NEW;\nEND\n",
            l = lit(name),
            stamp = ident(STAMP_COLUMN),
        );
        s.push_str(&trigger_function(&fname, &body));
        s.push_str(&format!(
            "CREATE OR REPLACE TRIGGER {}\n    BEFORE INSERT OR UPDATE ON {rel}\n    FOR EACH ROW EXECUTE FUNCTION {fname}();\n",
            Trigger::StampKeep.name()
        ));
    }
    if ds.sliding {
        let fname = Trigger::SlidingClock.function(name);
        let t = ident(&ds.time);
        s.push_str(&format!(
            "\n-- {name}: sliding: expiry counts from the latest activity; the clock never moves back,\n-- and never more than {SLIDING_CEILING} past now: a mistaken far-future value is brought back ({src})\n"
        ));
        // The ceiling in the clock's own type (a wall time in its zone).
        let (ty, ceiling_at) = match ds.clock() {
            Some(Clock::Timestamptz) => (
                "timestamptz".to_string(),
                format!("now() + interval {}", lit(SLIDING_CEILING)),
            ),
            // An existing table: the column's own type, whatever it is.
            None => (
                format!("{rel}.{t}%TYPE"),
                format!(
                    "retention.clock_value(NEW.{t}, now() + interval {}, {}::text)",
                    lit(SLIDING_CEILING),
                    lit(ds.zone())
                ),
            ),
            Some(Clock::Timestamp) => (
                "timestamp".to_string(),
                format!(
                    "(now() + interval {}) AT TIME ZONE {}::text",
                    lit(SLIDING_CEILING),
                    lit(ds.zone())
                ),
            ),
            Some(Clock::Date) => (
                "date".to_string(),
                format!(
                    "((now() + interval {}) AT TIME ZONE {}::text)::date",
                    lit(SLIDING_CEILING),
                    lit(ds.zone())
                ),
            ),
        };
        let body = format!(
            "\nDECLARE\n    v_ceiling {ty} := {ceiling_at};\nBEGIN\n    IF NEW.{t} > v_ceiling THEN\n        RAISE WARNING 'pgretain: %.% = % is more than {SLIDING_CEILING} in the future; stored as %',\n            TG_TABLE_NAME, {tl}, NEW.{t}, v_ceiling;\n        NEW.{t} := v_ceiling;\n    END IF;\n    IF OLD.{t} <= v_ceiling THEN   -- a far-future value from before may be corrected\n        NEW.{t} := greatest(OLD.{t}, NEW.{t});\n    END IF;\n    RETURN NEW;\nEND\n",
            tl = lit(&ds.time),
        );
        s.push_str(&trigger_function(&fname, &body));
        s.push_str(&format!(
            "CREATE OR REPLACE TRIGGER {}\n    BEFORE UPDATE ON {rel}\n    FOR EACH ROW EXECUTE FUNCTION {fname}();\n",
            Trigger::SlidingClock.name()
        ));
    }
    s
}
