//! The Citus flavour of the generated SQL (`engine: citus`, SPEC §3
//! "Citus"; the design is docs/citus.md). Pure functions, no I/O.
//!
//! The same runtime and the same datasets as on one server, with what a
//! Citus cluster needs around them:
//!   * a check, first, that the migration runs on a Citus coordinator that
//!     is registered as a node (reference tables then have a copy on it);
//!   * the settings tables made reference tables (a copy on every node)
//!     between the runtime's tables and its functions, so that the functions
//!     and triggers that read them are created on the workers too;
//!   * `keep_for()` and `is_held()` with a quoted body: Citus cannot plan a
//!     SQL-standard body that reads its tables (it parses the function's
//!     source text, which such a body does not have);
//!   * each dataset's table and archive distributed by the tenant column,
//!     co-located (`colocate_with => 'default'`: every table distributed by
//!     a column of the same type shares the shard placement);
//!   * everything created by the role that applies and given to the owner
//!     at the end (Citus opens one connection per role to each worker, and
//!     a connection cannot see what another has not committed yet).

use super::text::{dollar_quoted, lit};
use super::RUNTIME_SQL;

/// The settings tables that are reference tables on Citus: the ones the
/// triggers and views read on the workers. The run log, fingerprints and
/// config stay on the coordinator, where only the runs read them; so do the
/// tenant settings, which the application writes, with a reference copy
/// (`retention.tenant_keep`) for the workers.
pub const REFERENCE_TABLES: &[&str] = &[
    "retention.dataset",
    "retention.environment",
    "retention.policy_override",
    "retention.hold",
    "retention.subject",
    "retention.keep_history",
    "retention.tenant_keep",
];

/// Where the runtime's functions start (its tables are above).
pub const FUNCTIONS_MARKER: &str = "-- ---------------------------------------------------------------------------\n-- The functions. (Above: the tables.";

/// The functions given a quoted body on Citus.
const QUOTED_BODIES: &[&str] = &["retention.keep_for(", "retention.is_held("];

/// The opening of every Citus migration: where it may run, and the setting
/// its triggers need. Runs before anything is made.
pub fn preamble() -> String {
    let body = "
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'pgretain: the policy says engine: citus, but extension citus is not installed in database %',
                        pg_catalog.current_database()
            USING HINT = 'CREATE EXTENSION citus on the coordinator and on every worker, register them '
                         '(citus_set_coordinator_host, citus_add_node), then apply again. Nothing was applied.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node WHERE groupid = 0 AND noderole = 'primary') THEN
        RAISE EXCEPTION 'pgretain: this Citus coordinator is not registered as a node'
            USING HINT = 'run SELECT citus_set_coordinator_host(''<its host>'', <its port>) on it (the settings '
                         'tables are reference tables, with a copy on the coordinator), then apply again. Nothing was applied.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_node WHERE groupid <> 0 AND noderole = 'primary' AND isactive) THEN
        RAISE EXCEPTION 'pgretain: this Citus coordinator has no active worker'
            USING HINT = 'add the workers with SELECT citus_add_node(''<host>'', <port>), then apply again. Nothing was applied.';
    END IF;
END
";
    format!(
        "\n-- ---------------------------------------------------------------------------\n\
         -- engine: citus: this migration runs on the coordinator of a Citus cluster\n\
         -- (registered as a node, with workers), which makes every object on the\n\
         -- workers too. The datasets' triggers run on the shards, on the workers,\n\
         -- which Citus allows only when told (the triggers read reference tables\n\
         -- only, never another shard).\n\
         -- ---------------------------------------------------------------------------\n\
         DO {};\n\
         SET LOCAL citus.enable_unsafe_triggers = on;\n",
        dollar_quoted("citus", body)
    )
}

/// The runtime for Citus: its tables, then the settings tables made
/// reference tables, then its functions, `keep_for()` and `is_held()`
/// with a quoted body.
pub fn runtime() -> String {
    let (tables, functions) = match RUNTIME_SQL.find(FUNCTIONS_MARKER) {
        Some(i) => RUNTIME_SQL.split_at(i),
        // Not reached (a unit test checks the marker): the reference
        // tables would then be made after the functions.
        None => (RUNTIME_SQL, ""),
    };
    let mut s = String::from(tables);
    s.push_str(&reference_tables());
    s.push('\n');
    s.push_str(&quoted_bodies(functions));
    s
}

/// Tenant settings on Citus. The application writes them; had they a copy
/// on every node (a reference table), its write would reach the workers
/// through its own connections, and the trigger that remembers the value in
/// keep_history (as the owner: other connections) could not write there in
/// the same transaction ("placements modified by a different user"). So
/// `retention.tenant_setting` stays on the coordinator, without its foreign
/// key (which would make Citus take it in: tenant_setting_check refuses an
/// unknown dataset, and removing a dataset deletes its settings), and a
/// trigger of the owner keeps `retention.tenant_keep`, a reference table
/// of the same rows, which keep_for() reads on the workers.
const TENANT_KEEP: &str = "ALTER TABLE retention.tenant_setting DROP CONSTRAINT IF EXISTS tenant_setting_dataset_fkey;
CREATE TABLE IF NOT EXISTS retention.tenant_keep (
    dataset     text NOT NULL,
    tenant      text NOT NULL,
    environment text,
    keep        interval NOT NULL,
    UNIQUE NULLS NOT DISTINCT (dataset, tenant, environment)
);
COMMENT ON TABLE retention.tenant_keep IS
    'pgretain (engine: citus): a copy of retention.tenant_setting on every node, kept by its trigger copy_tenant_setting';
CREATE OR REPLACE FUNCTION retention.copy_tenant_setting()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $copy$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        DELETE FROM retention.tenant_keep k
         WHERE k.dataset = OLD.dataset AND k.tenant = OLD.tenant
           AND k.environment IS NOT DISTINCT FROM OLD.environment;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO retention.tenant_keep (dataset, tenant, environment, keep)
            VALUES (NEW.dataset, NEW.tenant, NEW.environment, NEW.keep);
    END IF;
    RETURN NULL;
END
$copy$;
CREATE OR REPLACE TRIGGER copy_tenant_setting
    AFTER INSERT OR UPDATE OR DELETE ON retention.tenant_setting
    FOR EACH ROW EXECUTE FUNCTION retention.copy_tenant_setting();
";

/// The settings tables as reference tables (unless they are already).
/// (Making `retention.dataset` one makes the tables with a foreign key to
/// it Citus "local" tables, on the coordinator only: each is then made a
/// reference table in turn.)
fn reference_tables() -> String {
    let mut s = String::from(
        "-- ---------------------------------------------------------------------------\n\
         -- engine: citus: the settings tables are reference tables, a copy on every node,\n\
         -- so that the datasets' triggers (new_rows stamps, sensitive keys) and the\n\
         -- views read them where the rows are. Written on the coordinator, they are\n\
         -- written on every node in the same transaction. (The run log, the\n\
         -- fingerprints and config stay on the coordinator, where the runs are.)\n\
         -- ---------------------------------------------------------------------------\n",
    );
    s.push_str(TENANT_KEEP);
    for t in REFERENCE_TABLES {
        s.push_str(&format!(
            "SELECT pg_catalog.create_reference_table({l})\n WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = {l}::pg_catalog.regclass AND repmodel = 't');\n",
            l = lit(t)
        ));
    }
    s
}

/// `functions` with each function of [`QUOTED_BODIES`] given a quoted body
/// and a pinned search_path instead of its SQL-standard `RETURN` body (the
/// same expression).
fn quoted_bodies(functions: &str) -> String {
    let mut s = functions.to_string();
    for name in QUOTED_BODIES {
        let head = format!("CREATE OR REPLACE FUNCTION {name}");
        let Some(start) = s.find(&head) else { continue };
        let Some(ret) = s[start..].find("\nRETURN ").map(|i| start + i) else {
            continue;
        };
        let Some(end) = s[ret..].find(";\n\n").map(|i| ret + i) else {
            continue;
        };
        // keep_for() reads the tenant settings' copy on every node.
        let expr = s[ret + "\nRETURN ".len()..end].replace(
            "FROM retention.tenant_setting s",
            "FROM retention.tenant_keep s",
        );
        s.replace_range(
            ret..end,
            &format!(
                "\nSET search_path = pg_catalog, pg_temp\nAS $citus$\n-- (engine: citus: a quoted body, which Citus can plan)\nSELECT {expr}\n$citus$"
            ),
        );
    }
    s
}

/// A table distributed by `column` across the workers, co-located with
/// every table distributed by a column of the same type (unless it is
/// distributed already). Its partitions, made before or after, are
/// distributed with it.
pub fn distribute(relation: &str, column: &str, what: &str) -> String {
    format!(
        "-- {what}: distributed by {column} across the workers, co-located with the other datasets (engine: citus)\n\
         SELECT pg_catalog.create_distributed_table({l}, {c}, colocate_with => 'default')\n WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = {l}::pg_catalog.regclass AND partmethod = 'h');\n",
        what = super::text::comment(what),
        column = super::text::comment(column),
        l = lit(relation),
        c = lit(column),
    )
}

/// A migration as a Citus coordinator can run it whatever sends it. Citus
/// makes a DDL statement on its tables on the workers by sending them the
/// text of the query it came in; a migration sent as one string (refinery
/// does) would send the workers every statement of the file, which they
/// refuse ("cannot insert multiple commands into a prepared statement").
/// So each statement that is not a DO block, a query, a SET or a routine
/// definition (which Citus writes out itself) runs through EXECUTE, its own
/// query: `DO $citus$ BEGIN EXECUTE $ddl$<the statement>$ddl$; END $citus$;`
/// with the statement verbatim. Comments stay as they were.
pub fn one_query_each(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 8);
    for piece in statements(sql) {
        let lead_len = lead(piece);
        let (lead_text, body) = piece.split_at(lead_len);
        out.push_str(lead_text);
        match body.strip_suffix(';') {
            Some(stmt) if needs_execute(stmt) => {
                let inner = format!("BEGIN EXECUTE {}; END", dollar_quoted("ddl", stmt));
                out.push_str(&format!("DO {};", dollar_quoted("citus", &inner)));
            }
            _ => out.push_str(body),
        }
    }
    out
}

/// Whether a statement runs through EXECUTE on Citus (see `one_query_each`).
fn needs_execute(stmt: &str) -> bool {
    let words: Vec<String> = stmt
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
    let routine = |x: &str| x == "FUNCTION" || x == "PROCEDURE";
    !(matches!(
        w(0),
        "DO" | "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "SET" | "RESET" | "BEGIN" | "COMMIT"
    ) || (w(0) == "CREATE" && routine(w(1)))
        || (w(0) == "CREATE" && w(1) == "OR" && w(2) == "REPLACE" && routine(w(3))))
}

/// The length of a piece's leading whitespace and `--` comment lines.
fn lead(piece: &str) -> usize {
    let mut at = 0;
    loop {
        let rest = &piece[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if trimmed.starts_with("--") {
            match trimmed.find('\n') {
                Some(nl) => at += nl + 1,
                None => return piece.len(),
            }
        } else {
            return at;
        }
    }
}

/// The SQL cut after each `;` that ends a statement: outside comments,
/// quoted identifiers, string literals (`'..'` and `E'..'` with its
/// backslash escapes) and dollar-quoted text. The pieces, joined, are the
/// text; the last one (after the last `;`) may be only blanks and comments.
fn statements(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut start) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map(|n| i + n + 1).unwrap_or(b.len());
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..]
                    .find("*/")
                    .map(|n| i + 2 + n + 2)
                    .unwrap_or(b.len());
            }
            b'"' => {
                i = sql[i + 1..]
                    .find('"')
                    .map(|n| i + 1 + n + 1)
                    .unwrap_or(b.len());
            }
            b'\'' => {
                let escapes = i > 0 && matches!(b[i - 1], b'E' | b'e');
                let mut j = i + 1;
                while j < b.len() {
                    if escapes && b[j] == b'\\' {
                        j += 2;
                    } else if b[j] == b'\'' {
                        if b.get(j + 1) == Some(&b'\'') {
                            j += 2;
                        } else {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                i = j + 1;
            }
            b'$' => {
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                match tag_end {
                    Some(e) if b[e] == b'$' && !b[i + 1].is_ascii_digit() => {
                        let tag = &sql[i..=e];
                        i = sql[e + 1..]
                            .find(tag)
                            .map(|n| e + 1 + n + tag.len())
                            .unwrap_or(b.len());
                    }
                    _ => i += 1,
                }
            }
            b';' => {
                out.push(&sql[start..=i]);
                i += 1;
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < b.len() {
        out.push(&sql[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_splits_where_its_functions_start() {
        assert_eq!(RUNTIME_SQL.matches(FUNCTIONS_MARKER).count(), 1);
        let rt = runtime();
        let marker = rt.find(FUNCTIONS_MARKER).unwrap_or(0);
        let refs = rt.find("create_reference_table").unwrap_or(usize::MAX);
        let first_function = rt
            .find("CREATE OR REPLACE FUNCTION retention.distributed")
            .unwrap_or(0);
        assert!(refs < marker && marker < first_function);
        assert!(
            rt.find("CREATE TABLE IF NOT EXISTS retention.keep_history")
                .unwrap_or(usize::MAX)
                < refs
        );
    }

    #[test]
    fn keep_for_and_is_held_get_quoted_bodies_with_the_same_expression() {
        let rt = runtime();
        for name in QUOTED_BODIES {
            let head = format!("CREATE OR REPLACE FUNCTION {name}");
            let at = rt.find(&head).unwrap_or(0);
            let body = &rt[at..at + rt[at..].find("$citus$;").unwrap_or(0) + "$citus$;".len()];
            assert!(
                body.contains("SET search_path = pg_catalog, pg_temp\nAS $citus$"),
                "{name}"
            );
            assert!(!body.contains("\nRETURN "), "{name}");
            // The expression is the runtime's own.
            let orig_at = RUNTIME_SQL.find(&head).unwrap_or(0);
            let orig = &RUNTIME_SQL[orig_at..];
            let ret = orig.find("\nRETURN ").unwrap_or(0) + "\nRETURN ".len();
            let expr = &orig[ret..ret + orig[ret..].find(";\n\n").unwrap_or(0)];
            let expr = expr.replace(
                "FROM retention.tenant_setting s",
                "FROM retention.tenant_keep s",
            );
            assert!(body.contains(&format!("SELECT {expr}\n$citus$;")), "{name}");
        }
        assert_eq!(rt.matches("$citus$;").count(), QUOTED_BODIES.len());
    }

    #[test]
    fn each_ddl_statement_becomes_its_own_query() {
        let sql = "-- a comment; with a semicolon\nCREATE INDEX i ON t (a);\n\
                   SELECT 'x;''y', E'\\';', \"q;\";\n\
                   DO $b$ BEGIN PERFORM 1; END $b$;\n\
                   CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
                   COMMENT ON TABLE t IS 'it''s; fine';\n-- the end\n";
        let out = one_query_each(sql);
        assert_eq!(
            out,
            "-- a comment; with a semicolon\nDO $citus$BEGIN EXECUTE $ddl$CREATE INDEX i ON t (a)$ddl$; END$citus$;\n\
             SELECT 'x;''y', E'\\';', \"q;\";\n\
             DO $b$ BEGIN PERFORM 1; END $b$;\n\
             CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
             DO $citus$BEGIN EXECUTE $ddl$COMMENT ON TABLE t IS 'it''s; fine'$ddl$; END$citus$;\n-- the end\n"
        );
        assert_eq!(statements(sql).concat(), sql);
    }

    #[test]
    fn free_text_stays_data_through_execute() {
        // A description holding the tags, quotes, semicolons and a comment
        // opener: the statement is cut where it ends, and its dollar tags
        // are ones the text does not contain.
        let hostile = "x$ddl$; DROP TABLE t; $citus$ -- '; /* \\";
        let sql = format!("COMMENT ON TABLE t IS {};\nSELECT 1;\n", lit(hostile));
        let out = one_query_each(&sql);
        let pieces = statements(&out);
        assert_eq!(pieces.len(), 3, "{out}"); // the last: the final newline
        assert!(pieces[0].trim_start().starts_with("DO $citus"), "{out}");
        assert!(pieces[0].contains(&lit(hostile)), "{out}");
        assert_eq!(pieces[1], "\nSELECT 1;");
    }
}
