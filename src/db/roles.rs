//! The roles of `access` in the live database (SPEC §3 "Access"): that
//! each exists and can do its part, and that the owner can drop the
//! datasets' partitions, checked before anything is applied, each failure
//! saying what to run to fix it.

use postgres::Client;

use super::{col, ctx, session, DbError};
use crate::model::{Access, Policy};
use crate::render::text::ident;

/// Whether every role of `access` exists and can do its part, before
/// anything is applied (SPEC §3 "Access"). `pending`: migrations will run
/// (they make the schemas and hand the tables to the owner).
pub fn check_access(
    client: &mut Client,
    a: &Access,
    policy: &Policy,
    pending: bool,
) -> Result<(), DbError> {
    let fail = |msg: String| Err(DbError(format!("{msg}; nothing was changed")));
    let me = client
        .query_one(
            "SELECT current_user::text, rolsuper, rolcreaterole, current_database()::text
               FROM pg_catalog.pg_roles WHERE rolname = current_user",
            &[],
        )
        .map_err(ctx("reading the current role"))?;
    let (me_name, me_super, me_createrole, data_db): (String, bool, bool, String) =
        (col(&me, 0)?, col(&me, 1)?, col(&me, 2)?, col(&me, 3)?);
    for role in a.roles() {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)",
                &[&role],
            )
            .map_err(ctx("reading the roles"))
            .and_then(|r| col(&r, 0))?;
        if !exists {
            return fail(format!(
                "role `{role}` named in `access` ({}) does not exist. Create it first: `CREATE ROLE {}{}`",
                a.source,
                ident(role),
                if role == a.owner { " LOGIN" } else { "" }
            ));
        }
    }
    let owner = a.owner.as_str();
    let o = client
        .query_one(
            "SELECT rolsuper, rolcanlogin, has_database_privilege(rolname, current_database(), 'CONNECT'),
                    pg_has_role(current_user, rolname, 'MEMBER')
               FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&owner],
        )
        .map_err(ctx("reading the owner role"))?;
    let (o_super, o_login, o_connect, i_can): (bool, bool, bool, bool) =
        (col(&o, 0)?, col(&o, 1)?, col(&o, 2)?, col(&o, 3)?);
    let q = ident(owner);
    if o_super {
        return fail(format!(
            "the owner role `{owner}` of `access` is a superuser: the nightly jobs would run with every right on the server, and nothing pgretain grants would limit them. Use a role without SUPERUSER (`ALTER ROLE {q} NOSUPERUSER`, or name another role)"
        ));
    }
    if !o_login {
        return fail(format!(
            "the owner role `{owner}` cannot log in, and pg_cron runs the jobs by connecting as it. Allow it: `ALTER ROLE {q} LOGIN` (and let pg_cron authenticate it, e.g. in pg_hba.conf or .pgpass)"
        ));
    }
    if !o_connect {
        return fail(format!(
            "the owner role `{owner}` may not connect to database `{data_db}`, where its jobs run. Allow it: `GRANT CONNECT ON DATABASE {} TO {q}`",
            ident(&data_db)
        ));
    }
    if !i_can {
        return fail(format!(
            "role `{me_name}`, which runs apply, cannot act as the owner role `{owner}`, and every migration creates its objects as the owner. Make it a member: `GRANT {q} TO {}`",
            ident(&me_name)
        ));
    }
    if !me_super && !me_createrole {
        return fail(format!(
            "role `{me_name}`, which runs apply, may not set the owner's own statement_timeout in this database (`ALTER ROLE {q} IN DATABASE ... SET statement_timeout = 0`, so no database or role timeout kills a run). Run apply as a superuser, or give it CREATEROLE: `ALTER ROLE {} CREATEROLE`",
            ident(&me_name)
        ));
    }
    for role in a.application.iter().chain(a.readers.iter()) {
        let r = client
            .query_one(
                "SELECT rolsuper, pg_has_role(rolname, $2, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&role, &owner],
            )
            .map_err(ctx("reading the roles"))?;
        let (sup, member): (bool, bool) = (col(&r, 0)?, col(&r, 1)?);
        if sup {
            return fail(format!(
                "role `{role}` of `access` is a superuser: no privilege pgretain grants or withholds applies to it, so it could change or stop the machinery. Use a role without SUPERUSER"
            ));
        }
        if member {
            return fail(format!(
                "role `{role}` of `access` is a member of the owner role `{owner}`, so it has every right of the machinery's owner. Revoke it: `REVOKE {q} FROM {}`",
                ident(role)
            ));
        }
    }
    // The schemas the migrations grant the owner CREATE on: possible only
    // for their owner or a superuser, unless the owner has it already.
    let mut schemas: Vec<&str> = Vec::new();
    for ds in &policy.datasets {
        schemas.push(&ds.schema);
        if let Some(arch) = &ds.archive {
            schemas.push(&arch.schema);
        }
    }
    for schema in schemas {
        let row = client
            .query_opt(
                "SELECT has_schema_privilege($2, n.oid, 'CREATE') AND has_schema_privilege($2, n.oid, 'USAGE'),
                        pg_catalog.pg_get_userbyid(n.nspowner)::text,
                        pg_has_role(current_user, n.nspowner, 'MEMBER')
                   FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
                &[&schema, &owner],
            )
            .map_err(ctx("reading the schemas"))?;
        if let Some(r) = row {
            let (has, sowner, mine): (bool, String, bool) = (col(&r, 0)?, col(&r, 1)?, col(&r, 2)?);
            if !has && !me_super && !mine {
                return fail(format!(
                    "the owner role `{owner}` cannot create partitions in schema `{schema}` (owned by `{sowner}`), and role `{me_name}` cannot grant it. As `{sowner}`, run: `GRANT USAGE, CREATE ON SCHEMA {} TO {q}`",
                    ident(schema)
                ));
            }
            if !me_super && !mine && policy.datasets.iter().any(|d| d.schema == schema) {
                for app in &a.application {
                    let usage: bool = client
                        .query_one(
                            "SELECT has_schema_privilege($1, $2, 'USAGE')",
                            &[app, &schema],
                        )
                        .map_err(ctx("reading the schemas"))
                        .and_then(|r| col(&r, 0))?;
                    if !usage {
                        return fail(format!(
                            "the application role `{app}` cannot reach schema `{schema}` (owned by `{sowner}`), and role `{me_name}` cannot grant it. As `{sowner}`, run: `GRANT USAGE ON SCHEMA {} TO {}`",
                            ident(schema),
                            ident(app)
                        ));
                    }
                }
            }
        }
    }
    // Tables that exist already: the owner must be able to drop their
    // partitions, or pending migrations must be able to hand them over.
    if let Err(e) = check_owner_can_drop(client, a) {
        let can_transfer: bool = me_super;
        if !(pending && can_transfer) {
            return Err(DbError(format!("{}; nothing was changed", e.0)));
        }
    }
    Ok(())
}

/// Whether the owner role can drop every partition of every dataset table
/// and archive that exists: it owns it, or is a member of its owner.
pub fn check_owner_can_drop(client: &mut Client, a: &Access) -> Result<(), DbError> {
    if !session::has_runtime(client)? {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT t.relid::regclass::text, pg_catalog.pg_get_userbyid(c.relowner)::text
               FROM retention.dataset d,
                    LATERAL (SELECT d.relation UNION ALL SELECT d.archive_relation) x(rel),
                    LATERAL pg_catalog.pg_partition_tree(pg_catalog.to_regclass(x.rel)) t
               JOIN pg_catalog.pg_class c ON c.oid = t.relid
              WHERE x.rel IS NOT NULL AND pg_catalog.to_regclass(x.rel) IS NOT NULL
                AND NOT pg_has_role($1, c.relowner, 'USAGE')
              ORDER BY 1",
            &[&a.owner],
        )
        .map_err(ctx("checking who owns the dataset tables"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let tables = rows
        .iter()
        .map(|r| Ok((col::<String>(r, 0)?, col::<String>(r, 1)?)))
        .collect::<Result<Vec<_>, DbError>>()?;
    let list: Vec<String> = tables
        .iter()
        .take(5)
        .map(|(t, owner)| format!("{t} (owned by `{owner}`)"))
        .collect();
    let first = tables.first().map(|(t, _)| t.as_str()).unwrap_or_default();
    Err(DbError(format!(
        "the owner role `{}` cannot drop {} partition(s) or table(s) of the datasets: {}{}. Give them to it, as their owner or a superuser: `ALTER TABLE {first} OWNER TO {}` (for each)",
        a.owner,
        rows.len(),
        list.join(", "),
        if rows.len() > 5 { ", …" } else { "" },
        ident(&a.owner)
    )))
}
