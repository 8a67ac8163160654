-- ---------------------------------------------------------------------------
-- pgretain runtime, version 7: the `retention` schema's machinery.
--
-- Everything pgretain needs in the database lives in schema `retention`:
--   retention.dataset          one row per policy dataset (written by migrations only)
--   retention.environment      the allowed environment values
--   retention.policy_override  policy overrides, versioned in git (migrations only)
--   retention.hold             legal holds (migrations only)
--   retention.subject          erasure across datasets by one key (migrations only)
--   retention.tenant_setting   run-time per-tenant settings, written by the application
--   retention.keep_history     every retention a row could have been stamped with
--   retention.config           policy-wide settings (how long the run log is kept)
--   retention.run_log          one row per enforcement run or erasure: the evidence
--   retention.fingerprint      every routine as apply left it (pgretain verify)
--   retention.archive_moved    partitions an archive took whole, and the retentions they carry
-- and the functions below. Dates are computed in UTC, whatever the session's
-- TimeZone: a row's deadline is (time AT TIME ZONE 'UTC') + retention, where
-- time is the instant the row's clock names (clock_of: a `timestamp` or
-- `date` clock is read in the dataset's time_zone).
--
-- Safe among other roles (SPEC §3 "Access"):
--   * every function runs with search_path pinned to pg_catalog, pg_temp
--     (a SET clause, or a SQL-standard body, whose names are bound when it
--     is created), and every object is named schema-qualified, so nothing
--     another role creates in public or elsewhere is ever executed; the
--     enforcement procedure, which commits and so cannot have a SET clause,
--     pins its search_path first thing;
--   * literals are typed where an operator is chosen (0::float8, not 0);
--   * functions the application reaches (the triggers on its tables, erase)
--     are SECURITY DEFINER: they run as the owner of schema retention, with
--     exactly the rights the machinery needs, never the caller's;
--   * nobody but the owner may execute anything here unless granted
--     (PUBLIC's EXECUTE is revoked at the end of every migration).
--   * timestamps and intervals that pass through text (partition bounds,
--     dynamic SQL) do so under TimeZone UTC, DateStyle ISO and IntervalStyle
--     postgres, set by the functions themselves, so the session's settings
--     never change what is created or removed.
--
-- Every statement is idempotent and upgrades version 1 in place: re-running
-- this file changes nothing, and running it over version 1 keeps every
-- setting, hold and run log row.
-- ---------------------------------------------------------------------------

-- (Not CREATE SCHEMA IF NOT EXISTS: that needs the right to create schemas
-- in the database even when the schema exists, which the owner role of
-- `access` does not have; the migration's opening made the schema.)
DO $schema$
BEGIN
    IF pg_catalog.to_regnamespace('retention') IS NULL THEN
        CREATE SCHEMA retention;
    END IF;
END
$schema$;
COMMENT ON SCHEMA retention IS 'pgretain: data-retention machinery (generated; do not edit by hand)';

CREATE TABLE IF NOT EXISTS retention.dataset (
    name               text PRIMARY KEY,
    relation           text NOT NULL UNIQUE,      -- the partitioned table, quoted: "app"."sessions"
    time_column        text NOT NULL,             -- the retention clock (timestamptz, timestamp or date)
    tenant_column      text,                      -- per-tenant settings, when set
    environment_column text,                      -- per-environment settings, when set
    erase_column       text,                      -- what retention.erase() matches
    granularity        text NOT NULL CHECK (granularity IN ('day', 'week', 'month')),
    premake            integer NOT NULL CHECK (premake > 0),  -- future partitions kept ready
    keep               interval NOT NULL CHECK (keep > interval '0'),
    min_keep           interval,
    max_keep           interval,
    new_rows           boolean NOT NULL,          -- changes_apply_to: new_rows (retention stamped on insert)
    archive_relation   text,                      -- on_expiry: archive: where expired rows go
    archive_keep       interval,                  -- ... and how long after their deadline they stay
    schedule           text NOT NULL,             -- pg_cron schedule of the enforcement job (GMT)
    batch_pages        integer NOT NULL DEFAULT 1000 CHECK (batch_pages > 0),
    lock_timeout       text NOT NULL DEFAULT '5s',
    source             text NOT NULL              -- where the dataset is defined in the policy
);
-- Version 2: the policy's words about the data, stored exactly as written.
ALTER TABLE retention.dataset
    ADD COLUMN IF NOT EXISTS description text,    -- what the data is
    ADD COLUMN IF NOT EXISTS owner text,          -- who answers for it (a person; not a role)
    ADD COLUMN IF NOT EXISTS legal_basis text;    -- why it may be kept
-- Version 3: the zone a `timestamp` or `date` clock's values are written in
-- (always UTC for a timestamptz clock, which is an instant).
ALTER TABLE retention.dataset
    ADD COLUMN IF NOT EXISTS time_zone text NOT NULL DEFAULT 'UTC';

CREATE TABLE IF NOT EXISTS retention.environment (
    name text PRIMARY KEY
);

CREATE TABLE IF NOT EXISTS retention.policy_override (
    dataset     text NOT NULL REFERENCES retention.dataset (name) ON DELETE CASCADE,
    tenant      text,
    environment text,
    keep        interval NOT NULL CHECK (keep > interval '0'),
    reason      text,
    source      text NOT NULL,
    CHECK (tenant IS NOT NULL OR environment IS NOT NULL),
    UNIQUE NULLS NOT DISTINCT (dataset, tenant, environment)
);

CREATE TABLE IF NOT EXISTS retention.hold (
    dataset     text NOT NULL REFERENCES retention.dataset (name) ON DELETE CASCADE,
    tenant      text,            -- NULL: every tenant
    environment text,            -- NULL: every environment
    until       date,            -- last day in force (UTC); NULL: until removed
    reason      text NOT NULL,
    source      text NOT NULL,
    UNIQUE NULLS NOT DISTINCT (dataset, tenant, environment, reason)
);

-- Version 3: subject: erasure across datasets by one key (the policy's
-- `subjects`, GDPR art. 17). One row per (subject, dataset): the column of
-- that dataset holding the subject's key. retention.erase_subject() reads it.
CREATE TABLE IF NOT EXISTS retention.subject (
    name        text NOT NULL,   -- the subject, e.g. conversation
    dataset     text NOT NULL REFERENCES retention.dataset (name) ON DELETE CASCADE,
    column_name text NOT NULL,   -- the column of the dataset's table holding the key
    source      text NOT NULL,   -- where the policy defines the subject
    PRIMARY KEY (name, dataset)
);
COMMENT ON TABLE retention.subject IS
    'pgretain: erasure across datasets by one key (the policy''s subjects); written by migrations only';

CREATE TABLE IF NOT EXISTS retention.tenant_setting (
    dataset     text NOT NULL REFERENCES retention.dataset (name) ON DELETE CASCADE,
    tenant      text NOT NULL,
    environment text,            -- NULL: every environment of the tenant
    keep        interval NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (dataset, tenant, environment)
);
COMMENT ON TABLE retention.tenant_setting IS
    'Run-time retention per tenant (and environment), written by the application within the dataset''s min_keep/max_keep';

-- keep_history: every retention a row of a dataset may carry. Two intervals
-- PostgreSQL calls equal (`1 month` and `30 days`) give different deadlines,
-- so values are told apart by their exact text, `keep_text` (IntervalStyle
-- postgres, filled by the trigger below), not by `=`.
CREATE TABLE IF NOT EXISTS retention.keep_history (
    dataset   text NOT NULL,
    keep      interval NOT NULL,
    keep_text text NOT NULL,
    PRIMARY KEY (dataset, keep_text),
    CONSTRAINT keep_history_sane CHECK (keep > interval '0' AND keep <= interval '1000 years')
);
-- Version 1 kept (dataset, keep) as its key, and no bounds: upgrade in place.
-- A value outside (0, 1000 years] cannot be anyone's retention (no setting
-- accepts it) and would only overflow the arithmetic of a run: it goes.
ALTER TABLE retention.keep_history ADD COLUMN IF NOT EXISTS keep_text text;
DO $upgrade$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_constraint
                WHERE conrelid = 'retention.keep_history'::pg_catalog.regclass
                  AND conname = 'keep_history_pkey'
                  AND pg_catalog.array_length(conkey, 1) = 2
                  AND conkey[2] = (SELECT attnum FROM pg_catalog.pg_attribute
                                    WHERE attrelid = 'retention.keep_history'::pg_catalog.regclass
                                      AND attname = 'keep')) THEN
        PERFORM pg_catalog.set_config('IntervalStyle', 'postgres', true);
        DELETE FROM retention.keep_history
         WHERE NOT (keep > interval '0' AND keep <= interval '1000 years');
        UPDATE retention.keep_history SET keep_text = keep::text WHERE keep_text IS NULL;
        ALTER TABLE retention.keep_history DROP CONSTRAINT keep_history_pkey;
        ALTER TABLE retention.keep_history ALTER COLUMN keep_text SET NOT NULL,
            ADD PRIMARY KEY (dataset, keep_text),
            ADD CONSTRAINT keep_history_sane CHECK (keep > interval '0' AND keep <= interval '1000 years');
    END IF;
END
$upgrade$;
-- Version 4: a value no setting, override or keep gives any more is marked
-- by the first run that sees it so, and forgotten once no stored row can
-- carry it (run_forget). `out_of_force_xmax`: the xmax of that run's
-- snapshot (every transaction that may have stamped the value has an xid
-- below it); `out_of_force_since`: when (for people). NULL: in force.
ALTER TABLE retention.keep_history
    ADD COLUMN IF NOT EXISTS out_of_force_since timestamptz,
    ADD COLUMN IF NOT EXISTS out_of_force_xmax xid8;

-- config: one row of policy-wide settings, written by migrations.
CREATE TABLE IF NOT EXISTS retention.config (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    run_log_keep interval NOT NULL DEFAULT interval '400 days'
                 CHECK (run_log_keep > interval '0')   -- run_log rows older than this are removed by the runs
);
INSERT INTO retention.config (id) VALUES (true) ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS retention.run_log (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset              text NOT NULL,
    action               text NOT NULL CHECK (action IN ('enforce', 'erase')),
    reference_time       timestamptz NOT NULL,   -- T: rows with a deadline before T are removed
    started_at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at          timestamptz,
    outcome              text NOT NULL DEFAULT 'running'
                         CHECK (outcome IN ('running', 'ok', 'partial', 'failed', 'skipped')),
    partitions_dropped   text[] NOT NULL DEFAULT '{}',
    partitions_skipped   text[] NOT NULL DEFAULT '{}',   -- left for the next run; the detail says why
    rows_deleted         bigint NOT NULL DEFAULT 0,      -- removed row by row
    rows_in_dropped      bigint NOT NULL DEFAULT 0,      -- estimated rows of dropped partitions
    rows_archived        bigint NOT NULL DEFAULT 0,
    archive_rows_deleted bigint NOT NULL DEFAULT 0,
    rows_kept_by_hold    bigint NOT NULL DEFAULT 0,      -- erase: rows a hold kept
    detail               text
);
CREATE INDEX IF NOT EXISTS run_log_dataset_started ON retention.run_log (dataset, started_at);
-- Version 2: who ran it (the login role: pg_cron's job role, or the
-- application's role for an erasure), recorded by the machinery itself.
-- (Rows of version 1 leave it NULL: who ran them was not recorded.)
ALTER TABLE retention.run_log ADD COLUMN IF NOT EXISTS run_by text;
-- Version 2: the backend of a `running` run (see run_start).
ALTER TABLE retention.run_log ADD COLUMN IF NOT EXISTS pid integer;
ALTER TABLE retention.run_log ALTER COLUMN run_by SET DEFAULT session_user;
-- Version 2 logs erasure keys as a SHA-256 hash, not in clear. Version 1
-- logged `erase_by = '<key>'`: those keys become their hash.
DO $upgrade$
DECLARE
    r record;
    v_quoted text;
    v_rest text;
BEGIN
    FOR r IN SELECT id, detail FROM retention.run_log
              WHERE action = 'erase' AND detail LIKE 'erase_by = %' LOOP
        -- quote_literal() wrote the key: '...' with '' for a quote, or E'...'
        -- when it held a backslash.
        v_quoted := substring(r.detail FROM '^erase_by = (E?''(?:[^'']|'''')*'')');
        v_rest := pg_catalog.substr(r.detail, 12 + pg_catalog.length(coalesce(v_quoted, '')));
        UPDATE retention.run_log
           SET detail = CASE
               WHEN v_quoted IS NULL OR v_quoted LIKE 'E%' THEN
                   'erase_by sha256 unknown (key removed from the log by the runtime upgrade to version 2)' || coalesce(v_rest, '')
               ELSE
                   'erase_by sha256 = ' || pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(
                       pg_catalog.replace(pg_catalog.substr(v_quoted, 2, pg_catalog.length(v_quoted) - 2), '''''', ''''),
                       'UTF8')), 'hex') || v_rest
               END
         WHERE id = r.id;
    END LOOP;
END
$upgrade$;

-- fingerprint: every routine of schema retention as apply left it
-- (md5 of its definition), so `pgretain verify` finds hand edits.
CREATE TABLE IF NOT EXISTS retention.fingerprint (
    routine text PRIMARY KEY,   -- signature: retention.keep_for(text,text,text)
    md5     text NOT NULL       -- md5(pg_get_functiondef(oid))
);
COMMENT ON TABLE retention.fingerprint IS
    'pgretain: every routine of schema retention as apply left it; pgretain verify reports hand edits';

-- Version 4: draining an adopted table's old storage (run_drain). One row
-- per old storage whose live rows are being copied into period partitions;
-- drain_log holds the keys of the rows the application changed in it
-- meanwhile (drain_capture), replayed before the swap.
CREATE TABLE IF NOT EXISTS retention.drain (
    dataset      text PRIMARY KEY,
    source       oid NOT NULL,           -- the old storage (pg_class oid)
    source_name  text NOT NULL,          -- ... by name, quoted, for messages
    filenode     oid NOT NULL,           -- its relfilenode: a rewrite (VACUUM FULL, CLUSTER) starts over
    target_name  text NOT NULL,          -- the partitioned copy being filled, quoted
    key_columns  text[] NOT NULL,        -- a unique key of NOT NULL columns: how a change is followed
    bound        timestamptz NOT NULL,   -- the old storage's upper bound (F)
    t_copy       timestamptz NOT NULL,   -- the copy holds the rows not expired at t_copy
    digest       text NOT NULL,          -- settings_digest() at the start: a change starts over
    next_page    bigint,                 -- the next page to copy; NULL once every page is copied
    pages        bigint NOT NULL,        -- pages of the old storage when the copy began
    indexes_done boolean NOT NULL DEFAULT false,
    copied       bigint NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE retention.drain IS
    'pgretain: an adopted table''s old storage being drained into period partitions (retention.run_drain)';
CREATE TABLE IF NOT EXISTS retention.drain_log (
    seq    bigserial PRIMARY KEY,
    source oid NOT NULL,                 -- retention.drain.source
    key    jsonb NOT NULL                -- the changed row's key_columns
);
CREATE INDEX IF NOT EXISTS drain_log_source_seq ON retention.drain_log (source, seq);

-- Version 6: archive_moved: the partitions an archive took whole. A
-- partition every row of which had expired was detached from the table and
-- made a child (by inheritance) of `<archive>_moved` (moved_relation), with
-- `archived_at` added as a constant default: no row was read or written.
-- Its rows' deadlines are not stored: each is the row's clock plus the
-- retention recorded here as it was in force when the partition moved
-- (keep_map; with changes_apply_to: new_rows, the row's own stamp), so the
-- archive's expiry stays exact (run_moved_expiry).
CREATE TABLE IF NOT EXISTS retention.archive_moved (
    relation    text PRIMARY KEY,     -- the moved table, quoted: "archive"."events_p20250101_moved"
    dataset     text NOT NULL REFERENCES retention.dataset (name) ON DELETE CASCADE,
    lower_bound timestamptz NOT NULL, -- its rows' clock was in [lower_bound, upper_bound)
    upper_bound timestamptz NOT NULL,
    archived_at timestamptz NOT NULL, -- T of the run that moved it
    keeps       interval[] NOT NULL,  -- every retention a row in it can have
    keep_map    jsonb                 -- the retentions in force then (frozen_keeps); NULL: each row's stamp
);
COMMENT ON TABLE retention.archive_moved IS
    'pgretain: partitions moved whole into an archive, with the retentions in force when they moved (written by the runs)';

-- ---------------------------------------------------------------------------
-- The functions. (Above: the tables. On Citus, `engine: citus`, the
-- migration makes the settings tables reference tables here, before the
-- functions and triggers that read them are created: see docs/citus.md.)
-- ---------------------------------------------------------------------------

-- distributed(relation): whether the relation is a table Citus distributes
-- by a column (the partitions of a distributed table are distributed
-- tables too). False without Citus. Such a table's rows live in shards on
-- the workers: the coordinator's table is empty, its blocks and ctids mean
-- nothing, so the run works on it by key ranges (key_slice), never by
-- ctid, and never moves or copies its partitions (docs/citus.md).
-- (Version 7.) Read through EXECUTE: the catalog exists only with Citus.
CREATE OR REPLACE FUNCTION retention.distributed(p_relation regclass)
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p
                             WHERE p.logicalrelid = $1 AND p.partmethod <> ''n'')'
        INTO v USING p_relation;
    RETURN v;
END
$$;

-- on_coordinator(): false only on a Citus worker. A write to a settings
-- table (a reference table on Citus: a copy on every node) fires its
-- triggers on every node; the one that remembers a retention in
-- keep_history (itself a reference table, written to every node) does so
-- once, on the coordinator. (Version 7.)
CREATE OR REPLACE FUNCTION retention.on_coordinator()
RETURNS boolean
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v boolean;
BEGIN
    IF to_regprocedure('pg_catalog.citus_is_coordinator()') IS NULL THEN
        RETURN true;
    END IF;
    EXECUTE 'SELECT pg_catalog.citus_is_coordinator()' INTO v;
    RETURN v;
END
$$;

-- slices(): how many equal key ranges a distributed relation is cut into
-- for row-level work: its "pages" (pages_of), so that batches of pages
-- [from, from + n) work on it as on any table. (Version 7.)
CREATE OR REPLACE FUNCTION retention.slices()
RETURNS bigint
LANGUAGE sql IMMUTABLE
RETURN 4096::bigint;

-- slice_step(relation, pages): how many slices of a distributed relation
-- hold about `pages` pages of its rows, all shards together
-- (citus_relation_size): batches on it are as large as on one server.
CREATE OR REPLACE FUNCTION retention.slice_step(p_relation regclass, p_pages bigint)
RETURNS bigint
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bytes bigint;
BEGIN
    EXECUTE 'SELECT pg_catalog.citus_relation_size($1)' INTO v_bytes USING p_relation;
    RETURN least(retention.slices(),
                 greatest(1, ceil(retention.slices()::numeric * p_pages
                                  / greatest(1, v_bytes / current_setting('block_size')::bigint)))::bigint);
END
$$;

-- key_slice(dataset, relation, archive, from, n): the rows of slices
-- [from, from + n) of a distributed relation, as a condition over a row
-- `t`: of its partition bounds (the clock's; an archive's on
-- retention_deadline) cut into slices() equal ranges, from the start of
-- slice `from` (none for the first) to the start of slice from + n (none
-- past the last). Each boundary is the same whichever batch computes it,
-- so the batches of a run cover the relation exactly, however its size
-- changes between them; and each is served by the index on the clock of
-- every shard. A relation without finite bounds (a default partition) is
-- one slice: `true`. (Version 7.)
CREATE OR REPLACE FUNCTION retention.key_slice(p_dataset text, p_relation regclass, p_archive boolean,
                                               p_from bigint, p_n bigint)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    v_lower timestamptz;
    v_upper timestamptz;
    v_s     bigint := retention.slices();
    v_parts text[] := '{}';
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF p_archive THEN
        SELECT b[1]::timestamptz, b[2]::timestamptz INTO v_lower, v_upper
          FROM pg_class c
          CROSS JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                          'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b
         WHERE c.oid = p_relation;
    ELSE
        SELECT p.lower_bound, p.upper_bound INTO v_lower, v_upper
          FROM retention.partitions(p_dataset) p WHERE p.partition = p_relation;
    END IF;
    IF v_lower IS NULL OR v_upper IS NULL OR NOT isfinite(v_lower) OR NOT isfinite(v_upper) THEN
        RETURN 'true';
    END IF;
    IF p_from > 0 THEN
        v_parts := v_parts || format('t.%I >= %s',
                                     CASE WHEN p_archive THEN 'retention_deadline' ELSE d.time_column END,
                                     CASE WHEN p_archive THEN format('%L::timestamptz', v_lower + (v_upper - v_lower) * (p_from::float8 / v_s))
                                          ELSE retention.clock_literal(p_dataset, v_lower + (v_upper - v_lower) * (p_from::float8 / v_s)) END);
    END IF;
    IF p_from + p_n < v_s THEN
        v_parts := v_parts || format('t.%I < %s',
                                     CASE WHEN p_archive THEN 'retention_deadline' ELSE d.time_column END,
                                     CASE WHEN p_archive THEN format('%L::timestamptz', v_lower + (v_upper - v_lower) * ((p_from + p_n)::float8 / v_s))
                                          ELSE retention.clock_literal(p_dataset, v_lower + (v_upper - v_lower) * ((p_from + p_n)::float8 / v_s)) END);
    END IF;
    RETURN coalesce(nullif(array_to_string(v_parts, ' AND '), ''), 'true');
END
$$;

-- keep_for(dataset, tenant, environment): the retention in force for a row
-- (SPEC §3), in this order, the first that applies:
--   1. (holds are checked separately, by is_held)
--   2. the most specific policy override naming the tenant
--      (tenant and environment beats tenant alone);
--   3. the run-time tenant setting (environment-specific beats all-environments);
--   4. a policy override for the environment;
--   5. the dataset's keep.
-- A SQL-standard body: its names and operators are bound when it is created
-- (under the migration's pinned search_path), and the planner still inlines
-- it into the enforcement queries.
CREATE OR REPLACE FUNCTION retention.keep_for(p_dataset text, p_tenant text, p_environment text)
RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(
    (SELECT o.keep FROM retention.policy_override o
      WHERE o.dataset = p_dataset AND o.tenant = p_tenant
        AND (o.environment = p_environment OR o.environment IS NULL)
      ORDER BY o.environment IS NULL LIMIT 1),
    (SELECT s.keep FROM retention.tenant_setting s
      WHERE s.dataset = p_dataset AND s.tenant = p_tenant
        AND (s.environment = p_environment OR s.environment IS NULL)
      ORDER BY s.environment IS NULL LIMIT 1),
    (SELECT o.keep FROM retention.policy_override o
      WHERE o.dataset = p_dataset AND o.tenant IS NULL AND o.environment = p_environment),
    (SELECT d.keep FROM retention.dataset d WHERE d.name = p_dataset));

-- is_held(dataset, tenant, environment, at): whether an active legal hold
-- covers a row. A hold is active through the end of its `until` day (UTC).
CREATE OR REPLACE FUNCTION retention.is_held(p_dataset text, p_tenant text, p_environment text, p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (
    SELECT 1 FROM retention.hold h
     WHERE h.dataset = p_dataset
       AND (h.tenant IS NULL OR h.tenant = p_tenant)
       AND (h.environment IS NULL OR h.environment = p_environment)
       AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp));

-- calendar_slack(r): how far calendar arithmetic can move a deadline. Adding
-- months clamps to the month's end (Jan 31 + 1 month = Feb 28), so two times
-- less than a day apart can get deadlines up to 3 days apart in either order.
-- Partition-level decisions add this slack so they are never wrong; the
-- row-level predicate is always exact.
CREATE OR REPLACE FUNCTION retention.calendar_slack(p_keep interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN date_part('year'::text, p_keep) <> 0::float8 OR date_part('month'::text, p_keep) <> 0::float8
            THEN interval '4 days' ELSE interval '0' END;

-- possible_keeps(dataset): every retention a row of the dataset can have at
-- this moment: the dataset's keep, its overrides and tenant settings, and, for
-- `changes_apply_to: new_rows`, every value ever stamped. Values PostgreSQL
-- calls equal but that differ (`1 month`, `30 days`) are both returned.
CREATE OR REPLACE FUNCTION retention.possible_keeps(p_dataset text)
RETURNS SETOF interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
    SELECT DISTINCT ON (k::text) k
      FROM (SELECT d.keep FROM retention.dataset d WHERE d.name = p_dataset
            UNION ALL SELECT o.keep FROM retention.policy_override o WHERE o.dataset = p_dataset
            UNION ALL SELECT s.keep FROM retention.tenant_setting s WHERE s.dataset = p_dataset
            UNION ALL SELECT h.keep FROM retention.keep_history h JOIN retention.dataset d ON d.name = h.dataset
                       WHERE h.dataset = p_dataset AND d.new_rows) AS x(k)
     ORDER BY k::text
$$;

-- keep_at_least(a, b): whether retention `a` gives every row a deadline at
-- least as late as `b` does, whatever the row's time: intervals are applied
-- as PostgreSQL applies them to a timestamp in UTC (months, clamped to the
-- month's end, then days, then time), and months last 28 to 31 days, so
-- `1 month` is not at least `29 days` (February rows) and `30 days` is not
-- at least `1 month` (January rows). When both have months and days or time
-- it compares the two deadlines from every start that can differ: the 1st,
-- 29th, 30th and 31st of every month of one 400-year Gregorian cycle. The
-- policy check (`Fields::at_least` in pgretain) applies the same rule.
CREATE OR REPLACE FUNCTION retention.keep_at_least(p_a interval, p_b interval)
RETURNS boolean
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH f AS (
        SELECT extract(year FROM p_a) * 12 + extract(month FROM p_a) AS ma,
               extract(year FROM p_b) * 12 + extract(month FROM p_b) AS mb,
               p_a - make_interval(years => extract(year FROM p_a)::int, months => extract(month FROM p_a)::int) AS fa,
               p_b - make_interval(years => extract(year FROM p_b)::int, months => extract(month FROM p_b)::int) AS fb)
    SELECT CASE
        WHEN f.ma = f.mb THEN f.fa >= f.fb             -- days and time only: compared exactly
        WHEN f.fa = interval '0' AND f.fb = interval '0' THEN f.ma >= f.mb
        ELSE (SELECT bool_and(s.t + p_a >= s.t + p_b)
                FROM generate_series(timestamp '2000-01-01', timestamp '2399-12-01', interval '1 month') AS m(m),
                     unnest(ARRAY[0, 28, 29, 30]) AS d(d),
                     LATERAL (SELECT m.m + d.d * interval '1 day' AS t) AS s
               WHERE date_trunc('month'::text, s.t) = m.m)
        END
      FROM f
$$;

-- keep_is_forward(r): no field of the interval is negative, so it moves every
-- row's time forward: `1 month -29 days` would put a February row's deadline
-- before the row itself.
CREATE OR REPLACE FUNCTION retention.keep_is_forward(p_keep interval)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN extract(year FROM p_keep) >= 0::numeric AND extract(month FROM p_keep) >= 0::numeric
   AND extract(day FROM p_keep) >= 0::numeric AND extract(hour FROM p_keep) >= 0::numeric
   AND extract(minute FROM p_keep) >= 0::numeric AND extract(second FROM p_keep) >= 0::numeric
   AND p_keep > interval '0';

-- remember(dataset, keep): keep_history remembers a retention a row may
-- be stamped with, and a value a run had marked out of force is in force
-- again (run_forget). (Version 7.) On Citus, once, by the coordinator:
-- a write to a reference table (retention.dataset, policy_override) fires
-- its triggers on every node's copy, and keep_history, a reference table
-- itself, is written on every node by the coordinator's one insert, a
-- distributed statement within the write of the coordinator's copy, which
-- Citus allows only when told, for that statement alone.
CREATE OR REPLACE FUNCTION retention.remember(p_dataset text, p_keep interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    v_citus  boolean := to_regprocedure('pg_catalog.citus_is_coordinator()') IS NOT NULL;
    v_nested text;
BEGIN
    IF NOT retention.on_coordinator() THEN
        RETURN;
    END IF;
    IF v_citus THEN
        v_nested := current_setting('citus.allow_nested_distributed_execution', true);
        PERFORM set_config('citus.allow_nested_distributed_execution', 'on', true);
    END IF;
    INSERT INTO retention.keep_history AS h (dataset, keep) VALUES (p_dataset, p_keep)
        ON CONFLICT (dataset, keep_text) DO UPDATE SET out_of_force_since = NULL, out_of_force_xmax = NULL
        WHERE h.out_of_force_xmax IS NOT NULL;
    IF v_citus THEN
        PERFORM set_config('citus.allow_nested_distributed_execution', coalesce(v_nested, 'off'), true);
    END IF;
END
$$;

-- tenant_setting_check: run-time settings must stay within the dataset's
-- bounds for every row; anything else is rejected with SQLSTATE 23514 and a
-- message the application can show. SECURITY DEFINER: the application
-- writes tenant_setting, and this check reads the datasets and records the
-- value in keep_history as the owner of schema retention.
CREATE OR REPLACE FUNCTION retention.tenant_setting_check()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d retention.dataset;
BEGIN
    SELECT * INTO d FROM retention.dataset WHERE name = NEW.dataset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgretain: unknown dataset "%"', NEW.dataset
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF d.tenant_column IS NULL THEN
        RAISE EXCEPTION 'pgretain: dataset "%" has no tenant column, so it takes no tenant settings', NEW.dataset
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.environment IS NOT NULL AND d.environment_column IS NULL THEN
        RAISE EXCEPTION 'pgretain: dataset "%" has no environment column; set environment to NULL', NEW.dataset
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.environment IS NOT NULL
       AND EXISTS (SELECT 1 FROM retention.environment)
       AND NOT EXISTS (SELECT 1 FROM retention.environment e WHERE e.name = NEW.environment) THEN
        RAISE EXCEPTION 'pgretain: unknown environment "%" for dataset "%"', NEW.environment, NEW.dataset
            USING ERRCODE = 'check_violation',
                  HINT = 'use one of: ' || (SELECT string_agg(name, ', ' ORDER BY name) FROM retention.environment);
    END IF;
    IF NOT retention.keep_is_forward(NEW.keep) OR NEW.keep > interval '1000 years' THEN
        RAISE EXCEPTION 'pgretain: retention % for dataset "%" is not a forward interval of at most 1000 years', NEW.keep, NEW.dataset
            USING ERRCODE = 'check_violation',
                  HINT = 'write a positive interval without negative parts, e.g. ''30 days''; '
                         '''1 month -29 days'' would put a February row''s deadline before the row';
    END IF;
    IF (d.min_keep IS NOT NULL AND NOT retention.keep_at_least(NEW.keep, d.min_keep))
       OR (d.max_keep IS NOT NULL AND NOT retention.keep_at_least(d.max_keep, NEW.keep)) THEN
        RAISE EXCEPTION 'pgretain: retention % for dataset "%" is outside its bounds for some rows', NEW.keep, NEW.dataset
            USING ERRCODE = 'check_violation',
                  HINT = format('choose a retention between %s and %s for every row (months last 28 to 31 days: '
                                'write the setting in the unit of the bounds)',
                                coalesce(d.min_keep::text, 'a positive interval'),
                                coalesce(d.max_keep::text, 'any length'));
    END IF;
    NEW.updated_at := now();
    -- Remembered, and in force again if a run had marked it out of force.
    PERFORM retention.remember(NEW.dataset, NEW.keep);
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER tenant_setting_check
    BEFORE INSERT OR UPDATE ON retention.tenant_setting
    FOR EACH ROW EXECUTE FUNCTION retention.tenant_setting_check();

-- keep_history_text: fills keep_history.keep_text, the value's exact text.
CREATE OR REPLACE FUNCTION retention.keep_history_text()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
BEGIN
    NEW.keep_text := NEW.keep::text;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER keep_history_text
    BEFORE INSERT OR UPDATE ON retention.keep_history
    FOR EACH ROW EXECUTE FUNCTION retention.keep_history_text();

-- remember_keep: policy retentions join keep_history too, so rows stamped
-- under an old policy are never forgotten by possible_keeps().
CREATE OR REPLACE FUNCTION retention.remember_keep()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM retention.remember(to_jsonb(NEW) ->> TG_ARGV[0], NEW.keep);   -- TG_ARGV[0]: the column naming the dataset
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER remember_keep
    AFTER INSERT OR UPDATE OF keep ON retention.dataset
    FOR EACH ROW EXECUTE FUNCTION retention.remember_keep('name');
CREATE OR REPLACE TRIGGER remember_keep
    AFTER INSERT OR UPDATE OF keep ON retention.policy_override
    FOR EACH ROW EXECUTE FUNCTION retention.remember_keep('dataset');

-- strip_keys(doc, keys): the document without the given keys, at any depth
-- (object keys compared case-insensitively). Used by the sensitive-value
-- triggers, so sensitive values never reach disk.
CREATE OR REPLACE FUNCTION retention.strip_keys(p_doc jsonb, p_keys text[])
RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    CASE jsonb_typeof(p_doc)
    WHEN 'object' THEN
        RETURN (SELECT coalesce(jsonb_object_agg(e.key, retention.strip_keys(e.value, p_keys)), '{}'::jsonb)
                  FROM jsonb_each(p_doc) AS e
                 WHERE NOT lower(e.key) = ANY (SELECT lower(k) FROM unnest(p_keys) AS k));
    WHEN 'array' THEN
        RETURN (SELECT coalesce(jsonb_agg(retention.strip_keys(a.value, p_keys) ORDER BY a.n), '[]'::jsonb)
                  FROM jsonb_array_elements(p_doc) WITH ORDINALITY AS a(value, n));
    ELSE
        RETURN p_doc;
    END CASE;
END
$$;

-- may_have_keys(doc, keys): false only when strip_keys(doc, keys) would
-- remove nothing, so a write without sensitive keys (most writes) costs one
-- scan of the document's text instead of a rebuild of the whole document.
-- Sound because a key strip_keys removes has the lower() of one of `keys`,
-- and jsonb's text writes every key between double quotes, escaping only
-- `"`, `\` and control characters: so lower(doc::text) contains
-- '"' || lower(key) || '"' (the quotes are caseless and bound the key, so
-- lower() of the whole text lowers the key as it lowers it alone). A key
-- with a character jsonb would escape is not looked for: true, and the
-- caller strips.
CREATE OR REPLACE FUNCTION retention.may_have_keys(p_doc jsonb, p_keys text[])
RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_text text := lower(p_doc::text);
    v_key  text;
BEGIN
    IF v_text IS NULL THEN
        RETURN false;
    END IF;
    FOREACH v_key IN ARRAY p_keys LOOP
        IF v_key ~ '[[:cntrl:]"\\]' OR strpos(v_text, '"' || lower(v_key) || '"') > 0 THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

-- clock_type(dataset): the type of the dataset's retention clock, as the
-- table has it now: 'timestamptz', 'timestamp' or 'date' (NULL for any
-- other, which no run accepts).
CREATE OR REPLACE FUNCTION retention.clock_type(p_dataset text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE a.atttypid WHEN 'pg_catalog.timestamptz'::regtype THEN 'timestamptz'
                           WHEN 'pg_catalog.timestamp'::regtype THEN 'timestamp'
                           WHEN 'pg_catalog.date'::regtype THEN 'date' END
      FROM retention.dataset d
      JOIN pg_attribute a ON a.attrelid = d.relation::regclass AND a.attname = d.time_column AND NOT a.attisdropped
     WHERE d.name = p_dataset
$$;

-- clock_of(dataset, expression): SQL for the instant (a timestamptz) that an
-- expression of the clock's type names: a timestamptz is one; a `timestamp`
-- is read in the dataset's time_zone, and a `date` is midnight there, e.g.
--   (t."created_at" AT TIME ZONE 'UTC'::text)
-- The same rule as pgretain's `Expiry::instant` (the expired_* views).
CREATE OR REPLACE FUNCTION retention.clock_of(p_dataset text, p_expr text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE retention.clock_type(d.name)
               WHEN 'timestamptz' THEN p_expr
               WHEN 'timestamp' THEN format('(%s AT TIME ZONE %L::text)', p_expr, d.time_zone)
               WHEN 'date' THEN format('(%s::timestamp without time zone AT TIME ZONE %L::text)', p_expr, d.time_zone)
           END
      FROM retention.dataset d WHERE d.name = p_dataset
$$;

-- clock_literal(dataset, at): instant `at` as a literal of the clock's own
-- type, for comparisons an index on the clock serves (a `date` clock is
-- compared with a `timestamp`: date < timestamp is in the same btree family).
CREATE OR REPLACE FUNCTION retention.clock_literal(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
    SELECT CASE retention.clock_type(d.name)
               WHEN 'timestamptz' THEN format('%L::timestamptz', p_at)
               ELSE format('%L::timestamp without time zone', p_at AT TIME ZONE d.time_zone)
           END
      FROM retention.dataset d WHERE d.name = p_dataset
$$;

-- bound_literal(dataset, at): instant `at` as a partition bound of the
-- clock's type ('2026-01-01 00:00:00+00', '2026-01-01 00:00:00' in the
-- dataset's time_zone, or '2026-01-01'; partitions start at midnight).
CREATE OR REPLACE FUNCTION retention.bound_literal(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
    SELECT CASE retention.clock_type(d.name)
               WHEN 'timestamptz' THEN quote_literal(p_at)
               WHEN 'timestamp' THEN quote_literal(p_at AT TIME ZONE d.time_zone)
               WHEN 'date' THEN quote_literal((p_at AT TIME ZONE d.time_zone)::date)
           END
      FROM retention.dataset d WHERE d.name = p_dataset
$$;

-- partition_bounds(dataset, parent): the partitions of `parent` (the
-- dataset's table, or a partitioned partition of it) with their bounds as
-- instants (NULL for a default partition; MINVALUE, the old storage of an
-- adopted table, is -infinity), oldest first. The bounds are read back from
-- the catalog's text under TimeZone UTC and DateStyle ISO (the SET
-- clauses), so the session's settings cannot change them; a `timestamp` or
-- `date` bound is read in the dataset's time_zone.
CREATE OR REPLACE FUNCTION retention.partition_bounds(p_dataset text, p_parent regclass)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
AS $$
    -- (The clock's type once, not once per partition: MATERIALIZED.)
    WITH k AS MATERIALIZED (SELECT retention.clock_type(p_dataset) AS ty)
    SELECT c.oid::regclass, v.lower_bound, v.upper_bound
      FROM retention.dataset d
      CROSS JOIN k
      JOIN pg_inherits i ON i.inhparent = p_parent
      JOIN pg_class c ON c.oid = i.inhrelid
      LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     'FROM \((?:''([^'']+)''|(MINVALUE))\) TO \((?:''([^'']+)''|(MAXVALUE))\)') AS b ON true
      CROSS JOIN LATERAL (
          SELECT CASE WHEN b[2] IS NOT NULL THEN '-infinity'::timestamptz
                      WHEN k.ty = 'timestamptz' THEN b[1]::timestamptz
                      ELSE b[1]::timestamp without time zone AT TIME ZONE d.time_zone END AS lower_bound,
                 CASE WHEN b[4] IS NOT NULL THEN 'infinity'::timestamptz
                      WHEN k.ty = 'timestamptz' THEN b[3]::timestamptz
                      ELSE b[3]::timestamp without time zone AT TIME ZONE d.time_zone END AS upper_bound) v
     WHERE d.name = p_dataset
     ORDER BY v.lower_bound NULLS FIRST
$$;

-- ranges(dataset): the ranges the dataset's table is partitioned into: its
-- own partitions, a drained history (run_drain) counting as one range
-- [MINVALUE, F). A new partition must not overlap any (create_partition).
CREATE OR REPLACE FUNCTION retention.ranges(p_dataset text)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT b.* FROM retention.dataset d, retention.partition_bounds(d.name, d.relation::regclass) b
     WHERE d.name = p_dataset
$$;

-- partitions(dataset): the partitions that hold the dataset's rows, each
-- with its bounds (partition_bounds), oldest first, default partitions
-- first: the table's own, and in place of a drained history (run_drain:
-- the old storage of an adopted table, now partitioned by period) that
-- history's partitions and its default partition. These are what a run
-- drops or reads, and what status and verify show.
CREATE OR REPLACE FUNCTION retention.partitions(p_dataset text)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.partition, x.lower_bound, x.upper_bound
      FROM retention.ranges(p_dataset) r
      JOIN pg_class c ON c.oid = r.partition
      CROSS JOIN LATERAL (SELECT r.partition, r.lower_bound, r.upper_bound WHERE c.relkind <> 'p'
                          UNION ALL
                          SELECT h.partition, h.lower_bound, h.upper_bound
                            FROM retention.partition_bounds(p_dataset, r.partition) h WHERE c.relkind = 'p') x
     ORDER BY x.lower_bound NULLS FIRST, x.partition::text
$$;

-- period_start(granularity, t): the start of the partition period holding t (UTC).
CREATE OR REPLACE FUNCTION retention.period_start(p_granularity text, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc(p_granularity, p_at, 'UTC'::text);

-- period_start(granularity, t, zone): the same, for periods that start at
-- midnight in `zone` (a `timestamp` or `date` clock's time_zone).
CREATE OR REPLACE FUNCTION retention.period_start(p_granularity text, p_at timestamptz, p_zone text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN date_trunc(p_granularity, p_at, p_zone);

-- copy_replica_identity(from, to): gives table `to` the replica identity
-- of `from` when that is FULL or NOTHING (the default, a primary key, is
-- each table's own index, and USING INDEX names an index of `from`).
-- Returns whether it changed `to`.
CREATE OR REPLACE FUNCTION retention.copy_replica_identity(p_from regclass, p_to regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ident "char" := (SELECT c.relreplident FROM pg_class c WHERE c.oid = p_from);
BEGIN
    IF v_ident IS NULL OR v_ident NOT IN ('f', 'n')
       OR v_ident IS NOT DISTINCT FROM (SELECT c.relreplident FROM pg_class c WHERE c.oid = p_to) THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER TABLE %s REPLICA IDENTITY %s', p_to, CASE v_ident WHEN 'f' THEN 'FULL' ELSE 'NOTHING' END);
    RETURN true;
END
$$;

-- create_partition(dataset, lower): creates the partition of the period
-- starting at `lower`, unless it exists. Rows of that period that sit in the
-- default partition (inserted before the partition existed) are moved into
-- it first, so PostgreSQL accepts the new partition. Periods start at
-- midnight in the dataset's time_zone (UTC for a timestamptz clock), and
-- bounds are written in the clock's type (bound_literal). Locks: ACCESS
-- EXCLUSIVE on the table (and its default partition) while it attaches.
CREATE OR REPLACE FUNCTION retention.create_partition(p_dataset text, p_lower timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_upper  timestamptz;
    v_parent regclass;
    v_schema text;
    v_name   text;
    v_default regclass;
    v_in     text;    -- SQL: row t of the period, in the clock's own type
    v_found  boolean;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_parent := d.relation::regclass;
    v_upper := (((p_lower AT TIME ZONE d.time_zone) + ('1 ' || d.granularity)::interval) AT TIME ZONE d.time_zone);
    IF EXISTS (SELECT 1 FROM retention.ranges(p_dataset) p
                WHERE p.lower_bound < v_upper AND p.upper_bound > p_lower) THEN
        RETURN false;   -- already there (or overlapping one made at another granularity)
    END IF;
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = v_parent;
    v_name := v_name || '_p' || to_char(p_lower AT TIME ZONE d.time_zone, 'YYYYMMDD');
    v_in := format('t.%I >= %s AND t.%I < %s', d.time_column, retention.clock_literal(p_dataset, p_lower),
                   d.time_column, retention.clock_literal(p_dataset, v_upper));
    SELECT p.partition INTO v_default FROM retention.ranges(p_dataset) p WHERE p.lower_bound IS NULL;
    IF v_default IS NOT NULL THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t WHERE %s)', v_default, v_in) INTO v_found;
    END IF;
    IF coalesce(v_found, false) THEN
        EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       v_schema, v_name, v_parent);
        EXECUTE format('WITH moved AS (DELETE FROM %s t WHERE %s RETURNING t.*)
                        INSERT INTO %I.%I SELECT * FROM moved',
                       v_default, v_in, v_schema, v_name);
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%s) TO (%s)',
                       v_parent, v_schema, v_name, retention.bound_literal(p_dataset, p_lower),
                       retention.bound_literal(p_dataset, v_upper));
    ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%s) TO (%s)',
                       v_schema, v_name, v_parent, retention.bound_literal(p_dataset, p_lower),
                       retention.bound_literal(p_dataset, v_upper));
    END IF;
    -- A partition publishes its own UPDATEs and DELETEs: it takes the
    -- table's replica identity (FULL or NOTHING; a key is its own index).
    -- Only this one: follow_replica_identity() reads every partition.
    PERFORM retention.copy_replica_identity(v_parent, format('%I.%I', v_schema, v_name)::regclass);
    RETURN true;
END
$$;

-- instant(value, zone): the instant a clock value names, one function per
-- clock type, so SQL over a table whose clock type pgretain has not seen
-- (an existing table) gets the right rule from PostgreSQL's own overload
-- resolution: the same rule as clock_of(). SQL-standard bodies: inlined.
CREATE OR REPLACE FUNCTION retention.instant(p_time timestamptz, p_zone text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_time;
CREATE OR REPLACE FUNCTION retention.instant(p_time timestamp without time zone, p_zone text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_time AT TIME ZONE p_zone;
CREATE OR REPLACE FUNCTION retention.instant(p_time date, p_zone text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_time::timestamp without time zone AT TIME ZONE p_zone;

-- clock_value(like, at, zone): instant `at` as a value of the type of
-- `like` (a clock value): the inverse of instant(), for triggers on tables
-- whose clock type pgretain has not seen.
CREATE OR REPLACE FUNCTION retention.clock_value(p_like timestamptz, p_at timestamptz, p_zone text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_at;
CREATE OR REPLACE FUNCTION retention.clock_value(p_like timestamp without time zone, p_at timestamptz, p_zone text)
RETURNS timestamp without time zone
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN p_at AT TIME ZONE p_zone;
CREATE OR REPLACE FUNCTION retention.clock_value(p_like date, p_at timestamptz, p_zone text)
RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN (p_at AT TIME ZONE p_zone)::date;

-- adopt_refusal(relation, time column, time zone, include_time): why an
-- existing table cannot be adopted as a dataset's table, or NULL when it
-- can (SPEC §3 "Existing tables": refused, with the object and the fix).
-- Read-only. `pgretain apply` runs this very query (its text, between the
-- $refusal$ quotes) before it prepares anything, when the runtime may not
-- be installed yet; adopt() calls the function before it changes anything.
CREATE OR REPLACE FUNCTION retention.adopt_refusal(p_relation text, p_time text, p_zone text, p_include_time boolean)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $refusal$
WITH t AS (SELECT pg_catalog.to_regclass($1) AS rel),
     nm AS (SELECT coalesce((SELECT rel::text FROM t), $1) AS n),
     k AS (SELECT c.relkind, c.relrowsecurity, c.relreplident FROM pg_catalog.pg_class c, t WHERE c.oid = t.rel),
     col AS (SELECT a.attnum, a.attnotnull,
                    CASE a.atttypid WHEN 'pg_catalog.timestamptz'::pg_catalog.regtype THEN 'timestamptz'
                                    WHEN 'pg_catalog.timestamp'::pg_catalog.regtype THEN 'timestamp'
                                    WHEN 'pg_catalog.date'::pg_catalog.regtype THEN 'date' END AS clock
               FROM pg_catalog.pg_attribute a, t
              WHERE a.attrelid = t.rel AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
     ranged AS (SELECT true AS ok FROM pg_catalog.pg_partitioned_table p, t, col
                 WHERE p.partrelid = t.rel AND p.partstrat = 'r' AND p.partnatts = 1 AND p.partattrs[0] = col.attnum),
     fk_in AS (SELECT pg_catalog.string_agg(pg_catalog.format('%I on %s', c.conname, c.conrelid::pg_catalog.regclass), ', ' ORDER BY c.conname) AS names
                 FROM pg_catalog.pg_constraint c, t WHERE c.contype = 'f' AND c.confrelid = t.rel AND c.conrelid <> t.rel),
     own AS (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(c.conname), ', ' ORDER BY c.conname) AS names
               FROM pg_catalog.pg_constraint c, t WHERE c.contype IN ('f', 'x') AND c.conrelid = t.rel),
     views AS (SELECT pg_catalog.string_agg(DISTINCT r.ev_class::pg_catalog.regclass::text, ', ') AS names
                 FROM pg_catalog.pg_depend dep JOIN pg_catalog.pg_rewrite r ON r.oid = dep.objid, t
                WHERE dep.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND dep.refobjid = t.rel AND r.ev_class <> t.rel),
     trg AS (SELECT pg_catalog.string_agg(pg_catalog.quote_ident(g.tgname), ', ' ORDER BY g.tgname) AS names
               FROM pg_catalog.pg_trigger g, t
              WHERE g.tgrelid = t.rel AND NOT g.tgisinternal
                AND (g.tgconstraint <> 0 OR g.tgoldtable IS NOT NULL OR g.tgnewtable IS NOT NULL)),
     uniq AS (SELECT pg_catalog.string_agg(pg_catalog.format('%s (%s)', coalesce(pg_catalog.quote_ident(c.conname), 'index ' || pg_catalog.quote_ident(ic.relname)),
                                                              pg_catalog.pg_get_indexdef(i.indexrelid)), '; ' ORDER BY ic.relname) AS names
                FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                LEFT JOIN pg_catalog.pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid, t, col
               WHERE i.indrelid = t.rel AND i.indisunique AND NOT col.attnum = ANY (i.indkey::int2[])
                 AND (NOT $4 OR i.indexprs IS NOT NULL OR i.indpred IS NOT NULL))
SELECT CASE
    WHEN (SELECT rel FROM t) IS NULL THEN
        pg_catalog.format('table %s does not exist: a dataset without `columns` names a table the application already has (declare `columns` to have pgretain create it)', (SELECT n FROM nm))
    WHEN (SELECT relkind FROM k) NOT IN ('r', 'p') THEN
        pg_catalog.format('%s is not a table', (SELECT n FROM nm))
    WHEN NOT EXISTS (SELECT 1 FROM col WHERE col.clock IS NOT NULL) THEN
        pg_catalog.format('column %I of %s is missing, or not a timestamptz, timestamp or date: name the retention clock in `time`', $2, (SELECT n FROM nm))
    WHEN (SELECT clock FROM col) = 'timestamptz' AND $3 <> 'UTC' THEN
        pg_catalog.format('%I of %s is a timestamptz, an instant: remove `time_zone` (it is only for timestamp and date clocks)', $2, (SELECT n FROM nm))
    WHEN NOT (SELECT attnotnull FROM col) THEN
        pg_catalog.format('column %I of %s may be NULL, and a row without a time never expires: fill it, then ALTER TABLE %s ALTER COLUMN %I SET NOT NULL', $2, (SELECT n FROM nm), (SELECT n FROM nm), $2)
    WHEN (SELECT relkind FROM k) = 'p' AND NOT EXISTS (SELECT 1 FROM ranged) THEN
        pg_catalog.format('table %s is partitioned, but not by range on %I alone: pgretain cannot enforce retention on its partitions', (SELECT n FROM nm), $2)
    WHEN (SELECT relkind FROM k) = 'p' THEN NULL   -- adopted as it is: its partitions stay
    WHEN (SELECT names FROM fk_in) IS NOT NULL THEN
        pg_catalog.format('foreign key %s references %s, and pgretain cannot move it: drop it, apply, then create it again (a key referencing a partitioned table must include %I)', (SELECT names FROM fk_in), (SELECT n FROM nm), $2)
    WHEN (SELECT names FROM own) IS NOT NULL THEN
        pg_catalog.format('%s has foreign keys or exclusion constraints of its own (%s): pgretain does not convert those yet; drop them, or keep the table out of the policy', (SELECT n FROM nm), (SELECT names FROM own))
    WHEN (SELECT names FROM views) IS NOT NULL THEN
        pg_catalog.format('view %s reads %s: after the conversion it would read only the old storage; drop it, apply, then create it again', (SELECT names FROM views), (SELECT n FROM nm))
    WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i, t WHERE i.inhrelid = t.rel OR i.inhparent = t.rel) THEN
        pg_catalog.format('%s takes part in table inheritance: pgretain cannot convert it', (SELECT n FROM nm))
    WHEN (SELECT relrowsecurity OR relreplident = 'i' FROM k) THEN
        pg_catalog.format('%s has row-level security or a replica identity USING INDEX: pgretain does not convert those yet', (SELECT n FROM nm))
    WHEN (SELECT names FROM trg) IS NOT NULL THEN
        pg_catalog.format('trigger %s of %s is a constraint trigger or uses transition tables, which a partitioned table cannot have', (SELECT names FROM trg), (SELECT n FROM nm))
    WHEN (SELECT names FROM uniq) IS NOT NULL THEN
        pg_catalog.format('unique key %s does not include %I, and a partitioned table''s unique keys must: %s', (SELECT names FROM uniq), $2,
                          CASE WHEN $4 THEN 'an expression or partial unique index cannot be extended; drop it, or keep the table out of the policy'
                               ELSE 'set `unique_keys: include_time` to have pgretain extend it by the clock (unique per key and time from then on)' END)
END
$refusal$;

-- has_index(relation, columns): whether the table has a valid btree index on
-- exactly these columns, in this order, without expressions or predicate
-- (an existing table's own index serves pgretain as well as its own would).
-- `pgretain apply` runs this very query (between the $has_index$ quotes,
-- the relation passed as text) before the runtime may exist.
CREATE OR REPLACE FUNCTION retention.has_index(p_relation regclass, p_columns text[])
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $has_index$
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i
      JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_catalog.pg_am am ON am.oid = ic.relam
     WHERE i.indrelid = $1::text::pg_catalog.regclass AND am.amname = 'btree'
       AND i.indexprs IS NULL AND i.indpred IS NULL AND i.indisvalid
       AND i.indnkeyatts = pg_catalog.cardinality($2::text[])
       AND (SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.n)
              FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
              JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE k.n <= i.indnkeyatts) = $2::text[])
$has_index$;

-- ensure_index(relation, columns, name): the index pgretain needs on an
-- adopted table, unless the table has one already (has_index). On the old
-- storage, `pgretain apply` built it beforehand, online, so creating it on
-- the partitioned table attaches that one instead of building.
CREATE OR REPLACE FUNCTION retention.ensure_index(p_relation regclass, p_columns text[], p_name text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF retention.has_index(p_relation, p_columns) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE INDEX %I ON %s (%s)', p_name, p_relation,
                   (SELECT string_agg(quote_ident(c), ', ' ORDER BY n) FROM unnest(p_columns) WITH ORDINALITY AS u(c, n)));
    RETURN true;
END
$$;

-- adopt_bound(dataset, at): the upper bound F of an adopted table's old
-- storage, which becomes one partition [MINVALUE, F): the start of the
-- period after next, counted from the latest of now and the newest row,
-- so that no row the application writes meanwhile falls outside it.
CREATE OR REPLACE FUNCTION retention.adopt_bound(p_dataset text, p_at timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    v_max   timestamptz;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    EXECUTE format('SELECT %s FROM %s t', retention.clock_of(p_dataset, format('max(t.%I)', d.time_column)), d.relation)
        INTO v_max;
    RETURN ((retention.period_start(d.granularity, greatest(p_at, v_max), d.time_zone) AT TIME ZONE d.time_zone)
            + ('2 ' || d.granularity)::interval) AT TIME ZONE d.time_zone;
END
$$;

-- adopt(dataset, include_time): makes the dataset's existing table its
-- range-partitioned table, in place (SPEC §3 "Existing tables"):
--   * a table already range-partitioned on the clock is kept as it is;
--   * an ordinary table T becomes partition [MINVALUE, F) of a new
--     partitioned table of the same name, columns, defaults, constraints,
--     indexes, comments, grants, owner, triggers, sequences and publication
--     membership; no row is copied or rewritten.
-- What makes it short (the statements `pgretain apply` runs first, online,
-- outside any transaction): CHECK (time < F) added NOT VALID and then
-- validated (SHARE UPDATE EXCLUSIVE: reads and writes go on), so ATTACH
-- need not scan T; every index the new table will have built on T with
-- CREATE INDEX CONCURRENTLY (unique keys extended by the clock, and
-- pgretain's own), so attaching reuses them. If they are missing (the
-- migration applied by hand), adopt() does them here, which holds T's
-- lock for as long as they take.
-- Locks: ACCESS EXCLUSIVE on T from the first statement to the end of the
-- migration's transaction (catalog work only: milliseconds to seconds),
-- waiting at most the migration's lock_timeout.
CREATE OR REPLACE FUNCTION retention.adopt(p_dataset text, p_include_time boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d         retention.dataset;
    v_rel     regclass;
    v_why     text;
    v_schema  text;
    v_name    text;
    v_old     text;      -- the old storage's new name
    v_parent  regclass;
    v_bound   timestamptz;
    v_def     text;
    v_prefix  text;
    v_cols    text;
    r         record;
    v_seq     record;
    v_next    bigint;
    v_opts    text;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_why := retention.adopt_refusal(d.relation, d.time_column, d.time_zone, p_include_time);
    IF v_why IS NOT NULL THEN
        RAISE EXCEPTION 'pgretain: dataset "%" cannot adopt its table: %', p_dataset, v_why
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Nothing was applied.';
    END IF;
    v_rel := d.relation::regclass;
    IF (SELECT c.relkind FROM pg_class c WHERE c.oid = v_rel) = 'p' THEN
        RETURN format('%s is already range-partitioned on %I: its partitions are kept as they are', v_rel, d.time_column);
    END IF;
    EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', v_rel);
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = v_rel;
    v_old := left(v_name, 54) || '_adopted';

    -- 1. The bound: CHECK (time < F), validated (apply made it online).
    SELECT (regexp_match(pg_get_constraintdef(c.oid), '< ''([^'']+)''::'))[1] INTO v_def
      FROM pg_constraint c WHERE c.conrelid = v_rel AND c.conname = 'pgretain_adopt_bound' AND c.convalidated;
    IF v_def IS NULL THEN
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT IF EXISTS pgretain_adopt_bound', v_rel);
        v_bound := retention.adopt_bound(p_dataset, now());
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT pgretain_adopt_bound CHECK (%I < %s)', v_rel, d.time_column,
                       retention.clock_literal(p_dataset, v_bound));
    ELSIF retention.clock_type(p_dataset) = 'timestamptz' THEN
        v_bound := v_def::timestamptz;
    ELSE
        v_bound := v_def::timestamp without time zone AT TIME ZONE d.time_zone;
    END IF;

    -- 2. Unique keys extended by the clock: the index apply built (or one
    -- built now) takes the key's place on the old storage.
    FOR r IN
        SELECT i.indexrelid, ic.relname AS index_name, c.conname, c.contype,
               (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n)
                  FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                  JOIN pg_attribute a ON a.attrelid = v_rel AND a.attnum = k.attnum) AS cols
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = v_rel
         WHERE i.indrelid = v_rel AND i.indisunique
           AND NOT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = v_rel AND a.attname = d.time_column
                                                          AND a.attnum = ANY (i.indkey::int2[]))
         ORDER BY ic.relname
    LOOP
        v_def := left(r.index_name, 50) || '_with_time';
        IF to_regclass(format('%I.%I', v_schema, v_def)) IS NULL THEN
            EXECUTE format('CREATE UNIQUE INDEX %I ON %s (%s, %I)', v_def, v_rel, r.cols, d.time_column);
        END IF;
        IF r.conname IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', v_rel, r.conname);
            EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s USING INDEX %I', v_rel, left(r.conname, 54) || '_adopted',
                           CASE r.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, v_def);
        ELSE
            EXECUTE format('DROP INDEX %I.%I', v_schema, r.index_name);
            EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', v_schema, v_def, left(r.index_name, 54) || '_adopted');
        END IF;
    END LOOP;

    -- 3. The old storage steps aside: renamed, with its indexes.
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v_rel, v_old);
    FOR r IN SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = v_rel AND ic.relname NOT LIKE '%\_adopted' ORDER BY ic.relname LOOP
        EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', v_schema, r.relname, left(r.relname, 54) || '_adopted');
    END LOOP;

    -- 4. The partitioned table, of the same shape (no identity yet: below).
    EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS
                    INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS INCLUDING COMPRESSION)
                    PARTITION BY RANGE (%I)', v_schema, v_name, v_rel, d.time_column);
    v_parent := format('%I.%I', v_schema, v_name)::regclass;
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT pgretain_adopt_bound', v_parent);
    EXECUTE format('ALTER TABLE %s OWNER TO %I', v_parent,
                   (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = v_rel));
    EXECUTE format('COMMENT ON TABLE %s IS %L', v_parent, obj_description(v_rel, 'pg_class'));

    -- 5. Sequences: a serial's sequence now belongs to the new table; an
    -- identity moves to it, going on from where it was.
    FOR r IN SELECT a.attname, a.attidentity FROM pg_attribute a
              WHERE a.attrelid = v_rel AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LOOP
        CONTINUE WHEN pg_get_serial_sequence(v_rel::text, r.attname) IS NULL;
        SELECT s.*, c.oid AS seq INTO v_seq FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
         WHERE c.oid = pg_get_serial_sequence(v_rel::text, r.attname)::regclass;
        IF r.attidentity = '' THEN
            EXECUTE format('ALTER SEQUENCE %s OWNED BY %s.%I', v_seq.seq::regclass, v_parent, r.attname);
        ELSE
            EXECUTE format('SELECT CASE WHEN is_called THEN last_value + %s ELSE last_value END FROM %s',
                           v_seq.seqincrement, v_seq.seq::regclass) INTO v_next;
            v_opts := format('INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s%s START WITH %s',
                             v_seq.seqincrement, v_seq.seqmin, v_seq.seqmax, v_seq.seqcache,
                             CASE WHEN v_seq.seqcycle THEN ' CYCLE' ELSE '' END, v_next);
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I DROP IDENTITY', v_rel, r.attname);
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED %s AS IDENTITY (%s)', v_parent, r.attname,
                           CASE r.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END, v_opts);
        END IF;
    END LOOP;

    -- 6. Keys and indexes on the new table, under their old names; each is
    -- matched to the same index of the old storage when it attaches, so
    -- nothing is built.
    FOR r IN SELECT c.conname, c.contype, i.indexrelid
               FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid
              WHERE c.conrelid = v_rel AND c.contype IN ('p', 'u') ORDER BY c.conname LOOP
        SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.n) INTO v_cols
          FROM pg_index i, unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
          JOIN pg_attribute a ON a.attrelid = v_rel AND a.attnum = k.attnum
         WHERE i.indexrelid = r.indexrelid;
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s (%s)', v_parent,
                       CASE WHEN r.conname LIKE '%\_adopted' THEN left(r.conname, length(r.conname) - 8) ELSE r.conname END,
                       CASE r.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'UNIQUE' END, v_cols);
    END LOOP;
    FOR r IN SELECT ic.relname, i.indexrelid
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
              WHERE i.indrelid = v_rel
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = v_rel)
              ORDER BY ic.relname LOOP
        v_def := pg_get_indexdef(r.indexrelid);
        v_prefix := format(' INDEX %I ON %I.%I USING ', r.relname, v_schema, v_old);
        IF position(v_prefix IN v_def) = 0 THEN
            RAISE EXCEPTION 'pgretain: cannot read index % of %: %', r.relname, v_rel, v_def
                USING HINT = 'Nothing was applied.';
        END IF;
        EXECUTE replace(v_def, v_prefix,
                        format(' INDEX %I ON %s USING ', left(r.relname, length(r.relname) - 8), v_parent));
    END LOOP;

    -- 7. The application's triggers move to the new table (each fires once).
    FOR r IN SELECT t.oid, t.tgname FROM pg_trigger t
              WHERE t.tgrelid = v_rel AND NOT t.tgisinternal ORDER BY t.tgname LOOP
        v_def := pg_get_triggerdef(r.oid);
        EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, v_rel);
        EXECUTE replace(v_def, format(' ON %I.%I ', v_schema, v_old), format(' ON %s ', v_parent));
    END LOOP;

    -- 8. Grants (table and columns), replica identity, publications.
    FOR r IN SELECT a.privilege_type, a.grantee, a.is_grantable
               FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = v_rel AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON %s TO %s%s', r.privilege_type, v_parent,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                       CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    FOR r IN SELECT at.attname, a.privilege_type, a.grantee, a.is_grantable
               FROM pg_attribute at, aclexplode(at.attacl) a
              WHERE at.attrelid = v_rel AND at.attacl IS NOT NULL ORDER BY at.attnum LOOP
        EXECUTE format('GRANT %s (%I) ON %s TO %s%s', r.privilege_type, r.attname, v_parent,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END,
                       CASE WHEN r.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    PERFORM retention.copy_replica_identity(v_rel, v_parent);
    FOR r IN SELECT p.pubname FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
              WHERE pr.prrelid = v_rel ORDER BY p.pubname LOOP
        EXECUTE format('ALTER PUBLICATION %I ADD TABLE %s', r.pubname, v_parent);
        EXECUTE format('ALTER PUBLICATION %I DROP TABLE %s', r.pubname, v_rel);
    END LOOP;

    -- 9. The old storage becomes the partition [MINVALUE, F): its CHECK
    -- proves the bound, so PostgreSQL does not scan it.
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (MINVALUE) TO (%s)', v_parent, v_rel,
                   retention.bound_literal(p_dataset, v_bound));
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT pgretain_adopt_bound', v_rel);
    RETURN format('%s adopted: its rows are partition %s (times before %s); partitions from then on are new', v_parent, v_rel, v_bound);
END
$$;

-- follow_replica_identity(dataset): every partition of the dataset's table
-- (the default one included) gets the table's replica identity, FULL or
-- NOTHING (the default, a primary key, is each partition's own index).
-- A publication (CREATE PUBLICATION ... FOR ALL TABLES) checks each
-- partition's identity on UPDATE and DELETE: without one, the
-- application's updates and erasure would fail. Tables pgretain creates
-- have no primary key (a key must include the clock), so they are FULL.
CREATE OR REPLACE FUNCTION retention.follow_replica_identity(p_dataset text)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel   regclass;
    v_ident "char";
    v_n     integer := 0;
    r       record;
BEGIN
    SELECT c.oid, c.relreplident INTO v_rel, v_ident FROM retention.dataset d JOIN pg_class c ON c.oid = d.relation::regclass
     WHERE d.name = p_dataset;
    IF v_ident NOT IN ('f', 'n') THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT p.partition FROM retention.partitions(p_dataset) p LOOP
        IF retention.copy_replica_identity(v_rel, r.partition) THEN
            v_n := v_n + 1;
        END IF;
    END LOOP;
    RETURN v_n;
END
$$;

-- (Version 2's default_rows_in compared the clock with a timestamptz, which
-- is wrong for a `timestamp` clock: create_partition now asks itself.)
DROP FUNCTION IF EXISTS retention.default_rows_in(regclass, text, timestamptz, timestamptz);

-- premake(dataset, at): makes sure partitions exist for every period a row
-- can be written for and still be live, so that neither today's inserts, nor
-- late events, nor an import or a restore of history, land in the default
-- partition, where the only way out would be row by row:
--   * forward: from the period holding `at` through `premake` periods ahead;
--   * backward: every period that can still hold a live row, i.e. back to
--     `at` minus the longest retention a row can have now (possible_keeps,
--     plus calendar slack), at most 400 periods back. Older rows are past
--     every retention (a hold may still keep them: they are enforced in the
--     default partition like any other row).
-- Creates at most 100 partitions per call (newest periods first, after the
-- forward ones), so one transaction never takes too many locks; the next
-- call goes on. Returns how many it created.
CREATE OR REPLACE FUNCTION retention.premake(p_dataset text, p_at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_start  timestamptz;
    v_back   interval;
    v_first  timestamptz;
    v_lower  timestamptz;
    v_have   timestamptz[];
    v_made   integer := 0;
    v_step   integer;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_start := retention.period_start(d.granularity, p_at, d.time_zone);
    SELECT max(k + retention.calendar_slack(k)) INTO v_back FROM retention.possible_keeps(p_dataset) AS k;
    v_first := greatest(
        retention.period_start(d.granularity, ((p_at AT TIME ZONE 'UTC'::text) - coalesce(v_back, d.keep)) AT TIME ZONE 'UTC'::text,
                               d.time_zone),
        ((v_start AT TIME ZONE d.time_zone) - ('400 ' || d.granularity)::interval) AT TIME ZONE d.time_zone);
    -- The partitions that exist, read once: the daily run usually finds
    -- every period already there and creates nothing.
    SELECT array_agg(p.lower_bound) INTO v_have
      FROM retention.partitions(p_dataset) p WHERE p.lower_bound >= v_first;
    -- Steps 0 .. premake are the forward periods; then -1, -2, ... back to v_first.
    v_step := 0;
    LOOP
        v_lower := ((v_start AT TIME ZONE d.time_zone) + (v_step || ' ' || d.granularity)::interval) AT TIME ZONE d.time_zone;
        IF v_step >= 0 AND v_step > d.premake THEN
            v_step := -1;
            CONTINUE;
        END IF;
        EXIT WHEN v_step < 0 AND v_lower < v_first;
        EXIT WHEN v_made >= 100;
        IF NOT v_lower = ANY (coalesce(v_have, '{}')) AND retention.create_partition(p_dataset, v_lower) THEN
            v_made := v_made + 1;
        END IF;
        v_step := CASE WHEN v_step >= 0 THEN v_step + 1 ELSE v_step - 1 END;
    END LOOP;
    IF d.archive_relation IS NOT NULL THEN
        PERFORM retention.premake_archive(p_dataset, p_at);
    END IF;
    RETURN v_made;
END
$$;

-- premake_archive(dataset, at): the archive table is partitioned by month of
-- the archived rows' deadline; makes one partition per month from the
-- month of `at - archive keep` (an older deadline is past the keep: such a
-- row is removed in the run that archives it) to next month, at most 120.
-- (Version 4 made only this month's and next month's, so a backlog
-- archived late went to the default partition, read whole by every run's
-- expiry; a month whose rows already sit in the default partition is left
-- there.) A month all of whose rows are past their deadline plus the keep
-- is dropped by run_archive_expiry.
CREATE OR REPLACE FUNCTION retention.premake_archive(p_dataset text, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_lower  timestamptz;
    v_upper  timestamptz;
    v_schema text;
    v_name   text;
    v_back   integer;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = d.archive_relation::regclass;
    v_back := least(120, (SELECT (extract(year FROM a) * 12 + extract(month FROM a))::integer
                            FROM age(date_trunc('month', p_at, 'UTC'),
                                     date_trunc('month', ((p_at AT TIME ZONE 'UTC'::text) - d.archive_keep) AT TIME ZONE 'UTC'::text, 'UTC')) AS a));
    FOR i IN -greatest(v_back, 0) .. 1 LOOP
        v_lower := ((date_trunc('month', p_at, 'UTC') AT TIME ZONE 'UTC'::text) + (i || ' month')::interval) AT TIME ZONE 'UTC'::text;
        v_upper := ((v_lower AT TIME ZONE 'UTC'::text) + interval '1 month') AT TIME ZONE 'UTC'::text;
        IF NOT EXISTS (
            SELECT 1 FROM pg_inherits inh JOIN pg_class c ON c.oid = inh.inhrelid
             WHERE inh.inhparent = d.archive_relation::regclass
               AND c.relname = v_name || '_p' || to_char(v_lower AT TIME ZONE 'UTC'::text, 'YYYYMM')) THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                               v_schema, v_name || '_p' || to_char(v_lower AT TIME ZONE 'UTC'::text, 'YYYYMM'),
                               d.archive_relation, v_lower, v_upper);
            EXCEPTION WHEN check_violation THEN
                -- Rows of that month already sit in the archive's default
                -- partition; they are enforced there. Nothing to do.
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- column_as_text(alias, column): SQL for `alias.column::text`, or `NULL::text`
-- when the dataset has no such column.
CREATE OR REPLACE FUNCTION retention.column_as_text(p_alias text, p_column text)
RETURNS text
LANGUAGE sql IMMUTABLE
RETURN CASE WHEN p_column IS NULL THEN 'NULL::text' ELSE format('%s.%I::text', p_alias, p_column) END;

-- expired_predicate(dataset): the exact condition, as SQL over a row `t`
-- and the run's start `$1`, under which enforcement removes a row:
--   deadline (time + retention, in UTC) before T, and no active hold.
CREATE OR REPLACE FUNCTION retention.expired_predicate(p_dataset text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('((%s AT TIME ZONE ''UTC''::text) + %s) < ($1 AT TIME ZONE ''UTC''::text) AND NOT retention.is_held(%L::text, %s, %s, $1)',
                  retention.clock_of(d.name, format('t.%I', d.time_column)),
                  CASE WHEN d.new_rows THEN 't.retention_keep'
                       ELSE format('retention.keep_for(%L::text, %s, %s)', d.name, v.tenant, v.environment) END,
                  d.name, v.tenant, v.environment)
      FROM retention.dataset d,
           LATERAL (SELECT retention.column_as_text('t', d.tenant_column) AS tenant,
                           retention.column_as_text('t', d.environment_column) AS environment) v
     WHERE d.name = p_dataset
$$;

-- held_predicate(dataset): SQL over a row `t` and `$1`: an active hold covers it.
CREATE OR REPLACE FUNCTION retention.held_predicate(p_dataset text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('retention.is_held(%L::text, %s, %s, $1)', d.name,
                  retention.column_as_text('t', d.tenant_column),
                  retention.column_as_text('t', d.environment_column))
      FROM retention.dataset d WHERE d.name = p_dataset
$$;

-- run_held(dataset, T): the legal holds active at T, written out as SQL
-- over a row `t` (NULL when none is active), e.g.
--   (t."bot_id"::text = 'bot-7'::text AND true)
-- Same rule as is_held(), without a function call per row.
CREATE OR REPLACE FUNCTION retention.run_held(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('(%s AND %s)',
                             CASE WHEN h.tenant IS NULL THEN 'true'
                                  ELSE format('%s = %L::text', retention.column_as_text('t', d.tenant_column), h.tenant) END,
                             CASE WHEN h.environment IS NULL THEN 'true'
                                  ELSE format('%s = %L::text', retention.column_as_text('t', d.environment_column), h.environment) END),
                      ' OR ' ORDER BY h.tenant, h.environment, h.reason)
      FROM retention.hold h JOIN retention.dataset d ON d.name = h.dataset
     WHERE h.dataset = p_dataset
       AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp)
$$;

-- run_keep(dataset): SQL for the retention of a row `t` as the run sees it,
-- written out: for `changes_apply_to: new_rows`, its stamp; else, for a
-- tenant with a rule of its own (a policy override or a run-time setting),
-- the full keep_for() lookup, and for every other row its environment's
-- override or the dataset's keep, a CASE of literals (no function call per
-- row). The same retention as keep_for() gives each row (the property test
-- checks the predicate built on it against an independent oracle).
CREATE OR REPLACE FUNCTION retention.run_keep(p_dataset text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d         retention.dataset;
    v_tenant  text;
    v_env     text;
    v_keep    text;
    v_special text[];
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF d.new_rows THEN
        RETURN 't.retention_keep';
    END IF;
    v_tenant := retention.column_as_text('t', d.tenant_column);
    v_env := retention.column_as_text('t', d.environment_column);
    SELECT 'CASE' || string_agg(format(' WHEN %s = %L::text THEN %L::interval', v_env, o.environment, o.keep),
                                '' ORDER BY o.environment)
           || format(' ELSE %L::interval END', d.keep)
      INTO v_keep
      FROM retention.policy_override o
     WHERE o.dataset = p_dataset AND o.tenant IS NULL;
    v_keep := coalesce(v_keep, format('%L::interval', d.keep));   -- no environment override
    SELECT array_agg(x.tenant ORDER BY x.tenant) INTO v_special
      FROM (SELECT o.tenant FROM retention.policy_override o WHERE o.dataset = p_dataset AND o.tenant IS NOT NULL
            UNION SELECT s.tenant FROM retention.tenant_setting s WHERE s.dataset = p_dataset) x;
    IF v_special IS NOT NULL AND retention.distributed(d.relation::regclass) THEN
        -- On Citus a function that reads tables may not decide a CASE of a
        -- DELETE on a distributed table: each such tenant's keep_for() is
        -- written out too, per environment that has a rule of its own (any
        -- other environment, or none, gets keep_for(..., NULL): no rule
        -- names it).
        SELECT 'CASE' || string_agg(format(' WHEN %s = %L::text THEN %s', v_tenant, x.tenant, x.keep), '' ORDER BY x.tenant)
               || format(' ELSE %s END', v_keep)
          INTO v_keep
          FROM (SELECT t.tenant,
                       coalesce('CASE' || (SELECT string_agg(format(' WHEN %s = %L::text THEN %L::interval', v_env, e.environment,
                                                                    retention.keep_for(p_dataset, t.tenant, e.environment)),
                                                             '' ORDER BY e.environment)
                                             FROM (SELECT o.environment FROM retention.policy_override o
                                                    WHERE o.dataset = p_dataset AND (o.tenant = t.tenant OR o.tenant IS NULL)
                                                      AND o.environment IS NOT NULL
                                                   UNION SELECT s.environment FROM retention.tenant_setting s
                                                    WHERE s.dataset = p_dataset AND s.tenant = t.tenant AND s.environment IS NOT NULL) e)
                                || format(' ELSE %L::interval END', retention.keep_for(p_dataset, t.tenant, NULL)),
                                format('%L::interval', retention.keep_for(p_dataset, t.tenant, NULL))) AS keep
                  FROM unnest(v_special) AS t(tenant)) x;
    ELSIF v_special IS NOT NULL THEN
        v_keep := format('CASE WHEN %s = ANY (%L::text[]) THEN retention.keep_for(%L::text, %s, %s) ELSE %s END',
                         v_tenant, v_special, d.name, v_tenant, v_env, v_keep);
    END IF;
    RETURN v_keep;
END
$$;

-- run_predicate(dataset, T): the condition a run starting at T uses to
-- remove rows, over a row `t` and `$1` = T. It selects exactly the rows of
-- expired_predicate(), written out for speed with T and the policy as they
-- are when the run starts:
--   * a cheap filter first: `time < cutoff`, where cutoff = the latest
--     T - retention (+ calendar slack) over every retention a row can have;
--     a row at or after it cannot be expired, so the rest is skipped;
--   * the row's retention written out (run_keep): tenants with a rule of
--     their own (a policy override or a run-time setting) get the full
--     keep_for() lookup; every other row's retention is its environment's
--     override or the dataset's keep, a CASE;
--   * the holds active at T, written out (run_held).
CREATE OR REPLACE FUNCTION retention.run_predicate(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d         retention.dataset;
    v_keep    text := retention.run_keep(p_dataset);
    v_cutoff  timestamptz;
    v_held    text := retention.run_held(p_dataset, p_at);
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT max(((p_at AT TIME ZONE 'UTC'::text) - k + retention.calendar_slack(k)) AT TIME ZONE 'UTC'::text)
      INTO v_cutoff FROM retention.possible_keeps(p_dataset) AS k;
    RETURN format('t.%I < %s AND ((%s AT TIME ZONE ''UTC''::text) + %s) < ($1 AT TIME ZONE ''UTC''::text)',
                  d.time_column, retention.clock_literal(p_dataset, v_cutoff),
                  retention.clock_of(p_dataset, format('t.%I', d.time_column)), v_keep)
        || CASE WHEN v_held IS NULL THEN '' ELSE format(' AND NOT coalesce(%s, false)', v_held) END;
END
$$;

-- columns_of(relation): the column list of a table, quoted, in order.
CREATE OR REPLACE FUNCTION retention.columns_of(p_relation regclass, p_prefix text DEFAULT '')
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(p_prefix || quote_ident(a.attname), ', ' ORDER BY a.attnum)
      FROM pg_attribute a
     WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- remove_batch(dataset, relation, T, from page, pages, predicate): removes
-- the rows of one partition (or the default partition) that match the
-- predicate, in pages [from, from + pages) of it, and returns how many.
-- With `from` < 0, it removes instead up to `pages` rows the predicate
-- finds wherever they are (through an index, when the predicate names
-- the tenants that can have expired rows: run_special).
-- With an archive, every removed row is copied into it, with its deadline,
-- in the same statement. Called by the run between COMMITs.
CREATE OR REPLACE FUNCTION retention.remove_batch(p_dataset text, p_relation regclass, p_t timestamptz,
                                                  p_from_page bigint, p_pages bigint, p_pred text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d      retention.dataset;
    v_n    bigint;
    v_pred text := coalesce(p_pred, retention.run_predicate(p_dataset, p_t));
    v_keep text;
    v_which text;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF retention.distributed(p_relation) THEN
        -- Citus: a key range of slices (key_slice), on every shard at once;
        -- by index, every row the predicate finds (it names the tenants, so
        -- only their shards are read).
        v_which := CASE WHEN p_from_page < 0 THEN v_pred
                        ELSE retention.key_slice(p_dataset, p_relation, false, p_from_page, p_pages) || ' AND ' || v_pred END;
    ELSIF p_from_page < 0 THEN   -- by index: up to p_pages rows the predicate finds, wherever they are
        v_which := format('t.ctid = ANY (ARRAY(SELECT t.ctid FROM %s t WHERE %s LIMIT %s))', p_relation, v_pred, p_pages);
    ELSE
        v_which := format('t.ctid >= $2 AND t.ctid < $3 AND %s', v_pred);
    END IF;
    IF d.archive_relation IS NULL THEN
        EXECUTE format('DELETE FROM %s t WHERE %s', p_relation, v_which)
            USING p_t, format('(%s,0)', greatest(p_from_page, 0))::tid, format('(%s,0)', greatest(p_from_page, 0) + p_pages)::tid;
    ELSE
        -- Each row's deadline, with its retention written out (run_keep:
        -- a CASE of literals but for tenants with rules of their own).
        v_keep := retention.run_keep(p_dataset);
        EXECUTE format('WITH moved AS (DELETE FROM %s t WHERE %s RETURNING t.*)
                        INSERT INTO %s (%s, archived_at, retention_deadline)
                        SELECT %s, $1, ((%s AT TIME ZONE ''UTC''::text) + %s) AT TIME ZONE ''UTC''::text FROM moved t',
                       p_relation, v_which, d.archive_relation, retention.columns_of(d.relation::regclass),
                       retention.columns_of(d.relation::regclass, 't.'),
                       retention.clock_of(p_dataset, format('t.%I', d.time_column)), v_keep)
            USING p_t, format('(%s,0)', greatest(p_from_page, 0))::tid, format('(%s,0)', greatest(p_from_page, 0) + p_pages)::tid;
    END IF;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- pages_of(relation): the relation's size in pages; a distributed
-- relation's "pages" are its slices (key_slice).
CREATE OR REPLACE FUNCTION retention.pages_of(p_relation regclass)
RETURNS bigint
LANGUAGE sql STABLE
RETURN CASE WHEN retention.distributed(p_relation) THEN retention.slices()
            ELSE pg_relation_size(p_relation) / current_setting('block_size'::text)::bigint END;

-- error_note(what, sqlstate, message): one line for the run log: what was
-- being done, and the error, e.g. `app.t_p20260101: lock timeout (55P03): ...`.
CREATE OR REPLACE FUNCTION retention.error_note(p_what text, p_state text, p_message text)
RETURNS text
LANGUAGE sql IMMUTABLE
RETURN p_what || ': ' || CASE p_state
        WHEN '55P03' THEN 'lock timeout'
        WHEN '40001' THEN 'serialization failure'
        WHEN '40P01' THEN 'deadlock'
        WHEN '2BP01' THEN 'dependency'
        WHEN '23503' THEN 'foreign key'
        ELSE 'error' END || ' (' || p_state || '): ' || p_message;

-- archive_follow(dataset): the archive takes the table's shape before rows
-- move. A column the application added to the table is added to the
-- archive, with the same type; a column whose type differs, or an archive
-- column the table lost that cannot be left NULL, is a shape the archive
-- cannot follow: then no row moves (archived rows must be whole), and the
-- run says why (pgretain verify reports it too). Returns (ok, what it did
-- or why not). Locks: ACCESS EXCLUSIVE on the archive while adding a column.
CREATE OR REPLACE FUNCTION retention.archive_follow(p_dataset text, OUT ok boolean, OUT note text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d      retention.dataset;
    r      record;
    v_done text[] := '{}';
    v_bad  text[] := '{}';
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    FOR r IN
        SELECT t.attname, format_type(t.atttypid, t.atttypmod) AS t_type,
               format_type(a.atttypid, a.atttypmod) AS a_type, a.attname IS NULL AS missing
          FROM pg_attribute t
          LEFT JOIN pg_attribute a ON a.attrelid = d.archive_relation::regclass
                                  AND a.attname = t.attname AND a.attnum > 0 AND NOT a.attisdropped
         WHERE t.attrelid = d.relation::regclass AND t.attnum > 0 AND NOT t.attisdropped
         ORDER BY t.attnum
    LOOP
        IF r.missing THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', d.archive_relation, r.attname, r.t_type);
            v_done := v_done || format('added column %I %s to %s', r.attname, r.t_type, d.archive_relation);
        ELSIF r.t_type <> r.a_type THEN
            v_bad := v_bad || format('column %I is %s in %s but %s in %s',
                                     r.attname, r.t_type, d.relation, r.a_type, d.archive_relation);
        END IF;
    END LOOP;
    SELECT v_bad || coalesce(array_agg(format('archive column %I is NOT NULL but %s has no such column',
                                              a.attname, d.relation) ORDER BY a.attnum), '{}')
      INTO v_bad
      FROM pg_attribute a
     WHERE a.attrelid = d.archive_relation::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attnotnull AND a.attname NOT IN ('archived_at', 'retention_deadline')
       AND NOT EXISTS (SELECT 1 FROM pg_attribute t
                        WHERE t.attrelid = d.relation::regclass AND t.attname = a.attname
                          AND t.attnum > 0 AND NOT t.attisdropped);
    ok := cardinality(v_bad) = 0;
    note := NULLIF(array_to_string(v_done || CASE WHEN ok THEN '{}'::text[] ELSE
                       ARRAY['the archive cannot take the table''s shape, so no row was archived: '
                             || array_to_string(v_bad, '; ')
                             || ' (make the columns match, e.g. ALTER TABLE ... ALTER COLUMN ... TYPE)'] END,
                   '; '), '');
END
$$;

-- frozen_keeps(dataset): the sources of keep_for() for the dataset as they
-- are now, as data (values as text, IntervalStyle postgres):
--   {"keep": dataset's keep,
--    "ot": {tenant: {environment: keep}}, "on": {tenant: keep},  policy overrides naming a tenant
--    "st": {tenant: {environment: keep}}, "sn": {tenant: keep},  tenant settings
--    "e":  {environment: keep}}                                   overrides for an environment
-- moved_keep() reads it back: recorded when a partition moves into the
-- archive, it gives each of its rows the retention it had then, whatever
-- the settings become.
CREATE OR REPLACE FUNCTION retention.frozen_keeps(p_dataset text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
    SELECT jsonb_build_object(
        'keep', (SELECT d.keep::text FROM retention.dataset d WHERE d.name = p_dataset),
        'ot', coalesce((SELECT jsonb_object_agg(x.tenant, x.m)
                          FROM (SELECT o.tenant, jsonb_object_agg(o.environment, o.keep::text) AS m
                                  FROM retention.policy_override o
                                 WHERE o.dataset = p_dataset AND o.tenant IS NOT NULL AND o.environment IS NOT NULL
                                 GROUP BY o.tenant) x), '{}'::jsonb),
        'on', coalesce((SELECT jsonb_object_agg(o.tenant, o.keep::text) FROM retention.policy_override o
                         WHERE o.dataset = p_dataset AND o.tenant IS NOT NULL AND o.environment IS NULL), '{}'::jsonb),
        'st', coalesce((SELECT jsonb_object_agg(x.tenant, x.m)
                          FROM (SELECT s.tenant, jsonb_object_agg(s.environment, s.keep::text) AS m
                                  FROM retention.tenant_setting s
                                 WHERE s.dataset = p_dataset AND s.environment IS NOT NULL
                                 GROUP BY s.tenant) x), '{}'::jsonb),
        'sn', coalesce((SELECT jsonb_object_agg(s.tenant, s.keep::text) FROM retention.tenant_setting s
                         WHERE s.dataset = p_dataset AND s.environment IS NULL), '{}'::jsonb),
        'e', coalesce((SELECT jsonb_object_agg(o.environment, o.keep::text) FROM retention.policy_override o
                        WHERE o.dataset = p_dataset AND o.tenant IS NULL), '{}'::jsonb))
$$;

-- moved_keep(map, tenant, environment): the retention keep_for() gave a row
-- of that tenant and environment when `map` (frozen_keeps) was recorded:
-- the same sources in the same order. A SQL-standard body, inlined.
CREATE OR REPLACE FUNCTION retention.moved_keep(p_map jsonb, p_tenant text, p_environment text)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(p_map -> 'ot' -> p_tenant ->> p_environment,
                p_map -> 'on' ->> p_tenant,
                p_map -> 'st' -> p_tenant ->> p_environment,
                p_map -> 'sn' ->> p_tenant,
                p_map -> 'e' ->> p_environment,
                p_map ->> 'keep')::interval;

-- moved_relation(dataset): the table the archive's moved partitions are
-- children of, quoted: `<archive>_moved`, beside the archive (NULL without
-- an archive). Made by the first move (run_move).
CREATE OR REPLACE FUNCTION retention.moved_relation(p_dataset text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', n.nspname, left(c.relname, 57) || '_moved')
      FROM retention.dataset d
      JOIN pg_class c ON c.oid = to_regclass(d.archive_relation)
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE d.name = p_dataset
$$;

-- drop_moved(dataset): drops the moved partitions of the dataset's archive
-- and their parent (a migration releasing the dataset, or its archive).
CREATE OR REPLACE FUNCTION retention.drop_moved(p_dataset text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_rel text := retention.moved_relation(p_dataset);
BEGIN
    IF v_rel IS NOT NULL AND to_regclass(v_rel) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s CASCADE', v_rel);   -- CASCADE: its children, by inheritance
    END IF;
    DELETE FROM retention.archive_moved WHERE dataset = p_dataset;
END
$$;

-- run_move(dataset, T, partition, lower, upper, keeps, keep_map): moves
-- one partition, every row of which has expired (the caller proved it and
-- holds ACCESS EXCLUSIVE on the table and its default partition), into the
-- archive whole, and returns its new name. In this order, in the caller's
-- transaction:
--   * DETACH PARTITION (the table's lock, already held);
--   * what tied it to the table or to other roles goes: its foreign keys
--     (archived rows reference nothing), its own triggers and row security
--     policies (no other role's code runs when the archive is expired),
--     every grant (the archive is the owner's alone, as archive.<table> is);
--     it and its indexes are renamed `..._moved` (no name the archive's
--     months use) and set in the archive's schema, owned by the archive's
--     owner;
--   * `archived_at timestamptz NOT NULL DEFAULT T` is added: a constant
--     default is stored once in the catalog, so no row is rewritten;
--   * columns it has and `<archive>_moved` lacks (the application added
--     them to the table) are added to the latter, then INHERIT makes it a
--     child: `SELECT ... FROM <archive>_moved` reads every moved row;
--   * it is recorded in retention.archive_moved with its bounds, the
--     retentions a row in it can have and the ones in force (keep_map).
-- Any error is the caller's (its block rolls it all back).
-- Locks: ACCESS EXCLUSIVE on the partition; SHARE UPDATE EXCLUSIVE on
-- `<archive>_moved` (INHERIT), ACCESS EXCLUSIVE while a column is added.
CREATE OR REPLACE FUNCTION retention.run_move(p_dataset text, p_t timestamptz, p_partition regclass,
                                              p_lower timestamptz, p_upper timestamptz,
                                              p_keeps interval[], p_keep_map jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_parent text := retention.moved_relation(p_dataset);
    v_schema text;
    v_owner  text;
    r        record;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT n.nspname, pg_get_userbyid(c.relowner) INTO STRICT v_schema, v_owner
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = d.archive_relation::regclass;
    IF to_regclass(v_parent) IS NULL THEN
        EXECUTE format('CREATE TABLE %s (LIKE %s, archived_at timestamptz NOT NULL)', v_parent, d.relation);
        EXECUTE format('COMMENT ON TABLE %s IS %L', v_parent,
                       'pgretain: partitions of ' || d.relation || ' moved whole into the archive (children by inheritance; see retention.archive_moved)');
        EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', v_parent);
        EXECUTE format('ALTER TABLE %s OWNER TO %I', v_parent, v_owner);
    ELSIF (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = v_parent::regclass) <> v_owner THEN
        -- Another role made it first: whoever owns the parent reads every
        -- child through it. Not moved (the caller archives row by row).
        RAISE EXCEPTION '% is not owned by % (the archive''s owner): no partition is moved under it', v_parent, v_owner
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', d.relation, p_partition);
    FOR r IN SELECT c.conname FROM pg_constraint c WHERE c.conrelid = p_partition AND c.contype = 'f' ORDER BY 1 LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', p_partition, r.conname);
    END LOOP;
    FOR r IN SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = p_partition AND NOT t.tgisinternal ORDER BY 1 LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, p_partition);
    END LOOP;
    FOR r IN SELECT p.polname FROM pg_policy p WHERE p.polrelid = p_partition ORDER BY 1 LOOP
        EXECUTE format('DROP POLICY %I ON %s', r.polname, p_partition);
    END LOOP;
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', p_partition);
    FOR r IN SELECT DISTINCT a.grantee
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = p_partition AND a.grantee <> c.relowner
             UNION
             SELECT DISTINCT a.grantee
               FROM pg_attribute att, aclexplode(att.attacl) a
              WHERE att.attrelid = p_partition AND att.attacl IS NOT NULL
             ORDER BY 1 LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', p_partition,
                       CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END);
    END LOOP;
    EXECUTE format('ALTER TABLE %s OWNER TO %I', p_partition, v_owner);
    FOR r IN SELECT i.indexrelid::regclass AS idx, c.relname
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = p_partition ORDER BY c.relname LOOP
        EXECUTE format('ALTER INDEX %s RENAME TO %I', r.idx, left(r.relname, 57) || '_moved');
    END LOOP;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', p_partition,
                   left((SELECT c.relname FROM pg_class c WHERE c.oid = p_partition), 57) || '_moved');
    EXECUTE format('ALTER TABLE %s SET SCHEMA %I', p_partition, v_schema);
    EXECUTE format('ALTER TABLE %s ADD COLUMN archived_at timestamptz NOT NULL DEFAULT %L::timestamptz', p_partition, p_t);
    FOR r IN SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS a_type
               FROM pg_attribute a
              WHERE a.attrelid = p_partition AND a.attnum > 0 AND NOT a.attisdropped
                AND NOT EXISTS (SELECT 1 FROM pg_attribute m
                                 WHERE m.attrelid = v_parent::regclass AND m.attname = a.attname
                                   AND m.attnum > 0 AND NOT m.attisdropped)
              ORDER BY a.attnum LOOP
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %s', v_parent, r.attname, r.a_type);
    END LOOP;
    EXECUTE format('ALTER TABLE %s INHERIT %s', p_partition, v_parent);
    INSERT INTO retention.archive_moved (relation, dataset, lower_bound, upper_bound, archived_at, keeps, keep_map)
        VALUES (p_partition::text, p_dataset, p_lower, p_upper, p_t, p_keeps, p_keep_map);
    RETURN p_partition::text;
END
$$;

-- ---------------------------------------------------------------------------
-- One enforcement run. retention.enforce() below drives it; each step is one
-- of these functions, in its own transaction, and catches its own errors, so
-- one partition that fails never stops the others (SPEC §3 "Resilience").
-- ---------------------------------------------------------------------------

-- run_release(dataset): releases every hold this session has of the
-- dataset's run lock (a run of this session cancelled between two of its
-- steps, before it could log its end, leaves it held).
CREATE OR REPLACE FUNCTION retention.run_release(p_dataset text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    WHILE EXISTS (SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid() AND l.granted
                     AND l.classid = hashtext('pgretain')::oid AND l.objid = hashtext(p_dataset)::oid
                     AND l.objsubid = 2) LOOP
        PERFORM pg_advisory_unlock(hashtext('pgretain'), hashtext(p_dataset));
    END LOOP;
END
$$;

-- run_active(pid): whether backend `pid` may be running something now (it
-- exists and is not idle; a session whose state this role cannot see
-- counts as active).
CREATE OR REPLACE FUNCTION retention.run_active(p_pid integer)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM pg_stat_activity a
                    WHERE a.pid = p_pid AND a.state IS DISTINCT FROM 'idle')
$$;

-- run_start(dataset, T): takes the dataset's run lock (an advisory lock,
-- session-level, released by run_finish or when the session ends), writes
-- the run's `running` row and returns its id, with the dataset's
-- lock_timeout and batch size. NULL when another run is in progress
-- (logged `skipped`).
-- A cancel that lands exactly between two steps of a run (as a COMMIT
-- runs) leaves the lock held by that session, which may live on, idle:
-- * a later run of the same session releases it first;
-- * a run of another session that finds the lock held by an idle session,
--   with no run in progress there, goes ahead without it and says so.
--   Two runs still never overlap: the `running` row names its backend,
--   and a run that finds another's row with that backend active skips.
-- Also: a run of the dataset still logged as `running` whose backend is
-- gone or idle is dead (killed, crashed, cancelled); it is set to
-- `failed`, its work up to its last COMMIT kept. And run log rows older
-- than run_log_keep (retention.config) are removed.
CREATE OR REPLACE FUNCTION retention.run_start(p_dataset text, p_t timestamptz,
                                               OUT log_id bigint, OUT lock_timeout text, OUT batch_pages integer,
                                               OUT takeover text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d        retention.dataset;
    v_holder integer;
    v_locked boolean;
BEGIN
    SELECT * INTO d FROM retention.dataset WHERE name = p_dataset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgretain: unknown dataset "%"', p_dataset
            USING HINT = 'the datasets are listed in retention.dataset';
    END IF;
    lock_timeout := d.lock_timeout;
    batch_pages := d.batch_pages;
    -- Starts of runs of this dataset, one at a time (until this commits).
    PERFORM pg_advisory_xact_lock(hashtext('pgretain start'), hashtext(p_dataset));
    PERFORM retention.run_release(p_dataset);
    v_locked := pg_try_advisory_lock(hashtext('pgretain'), hashtext(p_dataset));
    IF NOT v_locked THEN
        SELECT l.pid INTO v_holder FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.classid = hashtext('pgretain')::oid AND l.objid = hashtext(p_dataset)::oid AND l.objsubid = 2
         LIMIT 1;
        IF v_holder IS NULL OR retention.run_active(v_holder) THEN
            v_holder := NULL;
        ELSE
            takeover := format('the run lock was held by session %s, idle (a run there was cancelled between two steps); this run went ahead without it',
                               v_holder);
        END IF;
    END IF;
    IF (NOT v_locked AND takeover IS NULL)
       OR EXISTS (SELECT 1 FROM retention.run_log r
                   WHERE r.dataset = p_dataset AND r.action = 'enforce' AND r.outcome = 'running'
                     AND r.pid IS DISTINCT FROM pg_backend_pid() AND r.pid IS NOT NULL
                     AND retention.run_active(r.pid)) THEN
        IF v_locked THEN
            PERFORM retention.run_release(p_dataset);
        END IF;
        RAISE NOTICE 'pgretain: enforcement of "%" is already running; this run does nothing', p_dataset;
        INSERT INTO retention.run_log (dataset, action, reference_time, finished_at, outcome, detail)
            VALUES (p_dataset, 'enforce', p_t, clock_timestamp(), 'skipped', 'another run was in progress');
        takeover := NULL;
        RETURN;
    END IF;
    BEGIN
        INSERT INTO retention.run_log (dataset, action, reference_time, pid)
            VALUES (p_dataset, 'enforce', p_t, pg_backend_pid()) RETURNING id INTO log_id;
        UPDATE retention.run_log
           SET outcome = 'failed',
               detail = concat_ws('; ', detail, format(
                   'ended without logging its outcome (its connection was terminated, it was cancelled, or the server stopped); found by run %s', log_id))
         WHERE dataset = p_dataset AND action = 'enforce' AND outcome = 'running' AND id <> log_id
           AND (pid IS NULL OR NOT retention.run_active(pid) OR pid = pg_backend_pid());
        DELETE FROM retention.run_log l
         WHERE l.dataset = p_dataset AND l.outcome <> 'running'
           AND l.started_at < clock_timestamp() - (SELECT c.run_log_keep FROM retention.config c);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        PERFORM retention.run_release(p_dataset);
        RAISE;
    END;
END
$$;

-- run_premake(dataset, T): future partitions, for run T. Returns NULL, or
-- why it failed; `busy` when the table stayed locked past lock_timeout (a
-- long transaction reading it), which every drop would wait for too.
-- `cancelled`: a statement_timeout or pg_cancel_backend() stopped it (the
-- run then stops too, releasing its lock; see enforce()).
CREATE OR REPLACE FUNCTION retention.run_premake(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                                 OUT busy boolean, OUT note text, OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_state text;
    v_msg   text;
BEGIN
    busy := false;
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    PERFORM retention.premake(p_dataset, greatest(p_t, now()));
EXCEPTION
    WHEN query_canceled THEN
        cancelled := true;
        note := 'premake: cancelled (statement_timeout, or pg_cancel_backend)';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        busy := v_state = '55P03';
        note := retention.error_note('premake failed', v_state, v_msg);
END
$$;

-- run_context(dataset, T): what the run needs to know once: the exact
-- predicate for T (run_predicate), the holds active at T (run_held) and
-- the rows no hold covers, for an index (run_unheld), every
-- retention a row can have (possible_keeps), the partitions (oldest first)
-- and the default partition, whether the archive can take rows
-- (archive_follow: `archive_ok`, and `archive_note`, what it did or why
-- not) and the archive's partitions. `error` is set when the run cannot go
-- on (it then does nothing more).
-- (Version 6 added `unheld`: dropped and made again, since CREATE OR
-- REPLACE cannot change what a function returns.)
DROP FUNCTION IF EXISTS retention.run_context(text, timestamptz, text);
CREATE OR REPLACE FUNCTION retention.run_context(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                                 OUT error text, OUT pred text, OUT held text, OUT unheld text,
                                                 OUT keeps interval[],
                                                 OUT archives boolean, OUT parts regclass[], OUT part_names text[],
                                                 OUT lowers timestamptz[], OUT uppers timestamptz[],
                                                 OUT default_part regclass, OUT archive_ok boolean, OUT archive_note text,
                                                 OUT archive_parts regclass[], OUT archive_part_names text[],
                                                 OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d       retention.dataset;
    v_state text;
    v_msg   text;
BEGIN
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT array_agg(k) INTO keeps FROM retention.possible_keeps(p_dataset) AS k;
    pred := retention.run_predicate(p_dataset, p_t);
    held := retention.run_held(p_dataset, p_t);
    unheld := retention.run_unheld(p_dataset, p_t);
    archives := d.archive_relation IS NOT NULL;
    SELECT array_agg(p.partition ORDER BY p.lower_bound NULLS FIRST, p.partition::text),
           array_agg(p.partition::text ORDER BY p.lower_bound NULLS FIRST, p.partition::text),
           array_agg(p.lower_bound ORDER BY p.lower_bound NULLS FIRST, p.partition::text),
           array_agg(p.upper_bound ORDER BY p.lower_bound NULLS FIRST, p.partition::text),
           (SELECT r.partition FROM retention.ranges(p_dataset) r WHERE r.lower_bound IS NULL)
      INTO parts, part_names, lowers, uppers, default_part
      FROM retention.partitions(p_dataset) p;
    archive_ok := true;
    IF archives THEN
        BEGIN
            SELECT f.ok, f.note INTO archive_ok, archive_note FROM retention.archive_follow(p_dataset) f;
        EXCEPTION WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
            archive_ok := false;
            archive_note := retention.error_note('the archive could not take the table''s shape, so no row was archived',
                                                 v_state, v_msg);
        END;
        SELECT array_agg(c.oid::regclass ORDER BY c.relname), array_agg(c.oid::regclass::text ORDER BY c.relname)
          INTO archive_parts, archive_part_names
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = d.archive_relation::regclass;
    END IF;
EXCEPTION
    WHEN query_canceled THEN
        cancelled := true;
        error := 'the run was cancelled (statement_timeout, or pg_cancel_backend) before it could start';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        error := retention.error_note('the run could not start', v_state, v_msg);
END
$$;

-- run_partition(...): decides what one partition needs at T, and does it
-- when that is a drop. Returns `action`:
--   none     no row in it can be expired (lower bound + every possible
--            retention is at or after T): nothing to do, not even a read;
--            or every row in it is past every retention but held (the
--            tenant index shows no row outside the held tenants);
--   dropped  every row in it is expired (upper bound + every possible
--            retention, plus calendar slack, is at or before T) and none is
--            held: it was dropped (its rows archived first, with an archive);
--   rows     some rows may be expired: the run removes them in batches
--            (run_batch);
--   moved    every row is expired, none held, and the dataset archives:
--            it was moved into the archive whole (run_move), `in_dropped`
--            and `archived` its rows;
--   copy     every row is expired but a few held ones (`kept` of them):
--            the run copies those to a new partition and drops this one
--            (run_copy_kept, with neighbouring partitions like it; the run
--            does the same with a default partition it keeps few rows of:
--            few_kept);
--   skipped  it could not be done now (`note` says why); the next run
--            retries.
-- `note` on a drop or `rows` says something the log should show (a
-- retried serialization failure; a partition kept by a stamp).
-- Before a drop, pgretain proves that nothing it did not mean to remove is
-- in the partition: with an archive, the partition must be empty once its
-- expired rows are archived; with changes_apply_to: new_rows, no row's
-- stamped retention may make it unexpired (a stamp written before
-- version 2, or with the trigger disabled). Otherwise it is not dropped.
-- (With all_rows, every row's retention is one of the possible retentions
-- by construction, so the bound proves it.)
-- Locks: ACCESS EXCLUSIVE on the table and its default partition (taken
-- first, so a long reader of the table makes the run skip every drop
-- rather than queue inserts once per partition) and on the partition,
-- each waiting at most lock_timeout. A foreign key referencing the
-- partition, which would block the drop, is found first and named.
-- (Version 5 added `kept`, version 6 `p_unheld` (run_unheld, once per
-- run): the function is dropped and made again, since CREATE OR REPLACE
-- cannot change what a function returns or takes.)
DROP FUNCTION IF EXISTS retention.run_partition(text, timestamptz, text, regclass, timestamptz, timestamptz,
                                                interval[], text, text, regclass, boolean, boolean);
DROP FUNCTION IF EXISTS retention.run_partition(text, timestamptz, text, regclass, timestamptz, timestamptz,
                                                interval[], text, text, text, regclass, boolean, boolean);
CREATE FUNCTION retention.run_partition(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                        p_partition regclass, p_lower timestamptz, p_upper timestamptz,
                                        p_keeps interval[], p_pred text, p_held text, p_unheld text,
                                        p_default regclass, p_busy boolean, p_archive_ok boolean,
                                        OUT action text, OUT in_dropped bigint, OUT archived bigint,
                                        OUT busy boolean, OUT note text, OUT problem boolean,
                                        OUT cancelled boolean, OUT kept bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    v_whole boolean;
    v_can   boolean;
    v_name  text := p_partition::text;   -- taken before a drop: a dropped regclass prints as a bare OID
    v_fk    text;
    v_held  boolean;
    v_n     bigint;
    v_try   integer := 0;
    v_state text;
    v_msg   text;
    v_move  boolean;
    v_stamps text[];
    v_any   boolean;
BEGIN
    in_dropped := 0;
    archived := 0;
    busy := p_busy;
    problem := false;
    cancelled := false;
    v_whole := p_upper IS NOT NULL AND (
        SELECT bool_and((p_upper AT TIME ZONE 'UTC'::text) + k + retention.calendar_slack(k) <= (p_t AT TIME ZONE 'UTC'::text))
          FROM unnest(p_keeps) AS k);
    v_can := v_whole OR p_lower IS NULL OR NOT (
        SELECT bool_and((p_lower AT TIME ZONE 'UTC'::text) + k - retention.calendar_slack(k) >= (p_t AT TIME ZONE 'UTC'::text))
          FROM unnest(p_keeps) AS k);
    IF NOT coalesce(v_can, true) THEN
        action := 'none';
        RETURN;
    END IF;
    IF NOT coalesce(v_whole, false) THEN
        action := 'rows';
        RETURN;
    END IF;
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    LOOP
        BEGIN
            IF p_held IS NOT NULL THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t WHERE %s)', p_partition, p_held) INTO v_held;
                IF v_held THEN
                    -- Every row held (a partition a copy made of held rows,
                    -- say): nothing to do while the holds last. Found
                    -- through the tenant index, not by reading it
                    -- (p_unheld, run_unheld's); else by reading it below.
                    IF p_unheld IS NOT NULL THEN
                        EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s t WHERE %s)', p_partition, p_unheld) INTO v_any;
                        IF NOT v_any THEN
                            action := 'none';
                            RETURN;
                        END IF;
                    END IF;
                    -- Held rows keep it. Few of them (at most 10,000, and a
                    -- fifth of its rows): they are copied to a new partition
                    -- of the period and it is dropped (run_copy_kept);
                    -- else its expired rows go row by row. With an archive
                    -- every expired row is archived row by row anyway.
                    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s t WHERE %s LIMIT 10001) x',
                                   p_partition, p_held) INTO v_n;
                    SELECT CASE WHEN d.archive_relation IS NULL AND v_n <= 10000 AND v_n * 5 <= c.reltuples
                                     AND NOT retention.distributed(p_partition)
                                THEN 'copy' ELSE 'rows' END
                      INTO action FROM pg_class c WHERE c.oid = p_partition;
                    kept := v_n;
                    RETURN;
                END IF;
            END IF;
            IF busy THEN
                action := 'skipped';
                problem := true;
                note := v_name || ': not dropped: the table was locked by another transaction past lock_timeout';
                RETURN;
            END IF;
            -- A foreign key into the table has a clone on each partition:
            -- named by the constraint the DBA sees (the clones' root).
            WITH RECURSIVE up AS (
                SELECT c.oid, c.conparentid, c.conname, c.conrelid
                  FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid = p_partition
                UNION ALL
                SELECT p.oid, p.conparentid, p.conname, p.conrelid
                  FROM up JOIN pg_constraint p ON p.oid = up.conparentid
            )
            SELECT string_agg(DISTINCT format('%I on %s', up.conname, up.conrelid::regclass), ', ')
              INTO v_fk FROM up WHERE up.conparentid = 0;
            IF v_fk IS NOT NULL THEN
                action := 'skipped';
                problem := true;
                note := format('%s: not dropped: foreign key %s references the table', v_name, v_fk);
                RETURN;
            END IF;
            IF d.archive_relation IS NOT NULL THEN
                IF NOT p_archive_ok THEN
                    action := 'skipped';
                    problem := true;
                    note := v_name || ': not archived: the archive cannot take the table''s shape (see above)';
                    RETURN;
                END IF;
                -- Moved whole (run_move) when it has rows and every one
                -- has expired: proven by its bounds, and with new_rows by
                -- reading that no stamp keeps a row (the stamps it holds
                -- are recorded with it). If the move cannot be done (the
                -- table's shape no longer matches `<archive>_moved`, a name
                -- taken, ...), its rows are archived row by row, as ever.
                -- (Not on Citus: a distributed table has no inheritance children.)
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s)', p_partition) INTO v_move;
                v_move := v_move AND NOT retention.distributed(p_partition);
                v_stamps := NULL;
                IF v_move AND d.new_rows THEN
                    EXECUTE format('SELECT count(*) FILTER (WHERE NOT coalesce(%s, false)),
                                           array_agg(DISTINCT t.retention_keep::text)
                                      FROM ONLY %s t', p_pred, p_partition)
                        INTO v_n, v_stamps USING p_t;
                    v_move := v_n = 0 AND v_stamps IS NOT NULL;
                END IF;
                IF v_move THEN
                    -- The run log counts what it moves (the catalog's
                    -- estimate can be anything, 0 included): a read, never
                    -- a write, before the lock, which it would lengthen.
                    EXECUTE format('SELECT count(*) FROM ONLY %s', p_partition) INTO in_dropped;
                    BEGIN
                        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', d.relation);
                        IF p_default IS NOT NULL THEN
                            EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', p_default);
                        END IF;
                    EXCEPTION WHEN lock_not_available THEN
                        busy := true;
                        RAISE;
                    END;
                    BEGIN
                        PERFORM retention.run_move(p_dataset, p_t, p_partition, p_lower, p_upper,
                                                   CASE WHEN d.new_rows THEN v_stamps::interval[] ELSE p_keeps END,
                                                   CASE WHEN d.new_rows THEN NULL ELSE retention.frozen_keeps(p_dataset) END);
                        action := 'moved';
                        archived := in_dropped;
                        IF v_try > 0 THEN
                            note := format('%s: moved after %s serialization failure(s) or deadlock(s)', v_name, v_try);
                        END IF;
                        RETURN;
                    EXCEPTION
                        WHEN serialization_failure OR deadlock_detected OR query_canceled OR lock_not_available THEN
                            RAISE;
                        WHEN OTHERS THEN
                            GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                            in_dropped := 0;
                            action := 'rows';
                            note := retention.error_note(v_name || ': not moved into the archive whole, so its rows are archived row by row',
                                                         v_state, v_msg);
                            RETURN;
                    END;
                END IF;
                archived := retention.remove_batch(p_dataset, p_partition, p_t, 0, retention.pages_of(p_partition) + 1, p_pred);
                EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s LIMIT 1000) x', p_partition) INTO v_n;
                IF v_n > 0 THEN
                    action := 'skipped';
                    problem := true;
                    note := format('%s: not dropped: %s%s row(s) in it are not past their deadline (a stamped retention outside the possible ones?); they stay and are enforced row by row',
                                   v_name, CASE WHEN v_n >= 1000 THEN 'at least ' ELSE '' END, v_n);
                    RETURN;
                END IF;
            ELSIF d.new_rows THEN
                EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %s t WHERE NOT coalesce(%s, false) LIMIT 1000) x',
                               p_partition, p_pred) INTO v_n USING p_t;
                IF v_n > 0 THEN
                    action := 'rows';
                    problem := true;
                    note := format('%s: not dropped: %s%s row(s) in it carry a stamped retention that keeps them past T; its expired rows are removed row by row',
                                   v_name, CASE WHEN v_n >= 1000 THEN 'at least ' ELSE '' END, v_n);
                    RETURN;
                END IF;
            END IF;
            SELECT greatest(c.reltuples, 0)::bigint INTO in_dropped FROM pg_class c WHERE c.oid = p_partition;
            BEGIN
                EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', d.relation);
                IF p_default IS NOT NULL THEN
                    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', p_default);
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                busy := true;
                RAISE;
            END;
            EXECUTE format('DROP TABLE %s', p_partition);
            action := 'dropped';
            IF v_try > 0 THEN
                note := format('%s: dropped after %s serialization failure(s) or deadlock(s)', v_name, v_try);
            END IF;
            RETURN;
        EXCEPTION
            WHEN serialization_failure OR deadlock_detected THEN
                GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                v_try := v_try + 1;
                archived := 0;
                in_dropped := 0;
                IF v_try >= 3 THEN
                    action := 'skipped';
                    problem := true;
                    note := retention.error_note(v_name || ' (after 3 tries)', v_state, v_msg);
                    RETURN;
                END IF;
                PERFORM pg_sleep(0.1 * v_try);
            WHEN query_canceled THEN
                archived := 0;
                in_dropped := 0;
                action := 'skipped';
                problem := true;
                cancelled := true;
                note := v_name || ': cancelled (statement_timeout, or pg_cancel_backend)';
                RETURN;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                archived := 0;
                in_dropped := 0;
                action := 'skipped';
                problem := true;
                note := retention.error_note(v_name, v_state, v_msg);
                RETURN;
        END;
    END LOOP;
END
$$;

-- tenant_values(dataset, tenants): those of `tenants` that are values of
-- the tenant column's type as the column prints them, in the order the
-- column's index keeps them, with the column's type and its COLLATE clause
-- ('' when it has none). A tenant that is no value of the type, or not as
-- the column prints it (`07` for 7), names no row (the rules compare the
-- column's text), so it is left out. `tenants` NULL: no tenant column.
CREATE OR REPLACE FUNCTION retention.tenant_values(p_dataset text, p_tenants text[],
                                                   OUT col_type text, OUT col_collate text, OUT tenants text[])
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d       retention.dataset;
    v_canon text;
    v_t     text;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF d.tenant_column IS NULL THEN
        RETURN;
    END IF;
    SELECT format_type(a.atttypid, a.atttypmod),
           CASE WHEN a.attcollation = 0 THEN '' ELSE format(' COLLATE %I.%I', n.nspname, c.collname) END
      INTO STRICT col_type, col_collate
      FROM pg_attribute a
      LEFT JOIN pg_collation c ON c.oid = a.attcollation
      LEFT JOIN pg_namespace n ON n.oid = c.collnamespace
     WHERE a.attrelid = d.relation::regclass AND a.attname = d.tenant_column AND NOT a.attisdropped;
    tenants := '{}';
    FOR v_t IN SELECT DISTINCT x FROM unnest(p_tenants) AS x WHERE x IS NOT NULL LOOP
        BEGIN
            EXECUTE format('SELECT (%L::%s)::text', v_t, col_type) INTO v_canon;
        EXCEPTION WHEN OTHERS THEN
            v_canon := NULL;
        END;
        IF v_canon = v_t THEN
            tenants := tenants || v_t;
        END IF;
    END LOOP;
    EXECUTE format('SELECT coalesce(array_agg(x ORDER BY x::%s%s), ''{}'') FROM unnest($1) AS x', col_type, col_collate)
        INTO tenants USING tenants;
END
$$;

-- typed_tenants(dataset, tenants): SQL over a row `t` naming the rows of
-- those tenants in the tenant column's own type, so that an index on it
-- finds them:   t."account_id" = ANY ('{5,7}'::integer[])
-- 'false' when none is left (tenant_values); NULL when the dataset has no
-- tenant column or the list cannot be made.
CREATE OR REPLACE FUNCTION retention.typed_tenants(p_dataset text, p_tenants text[])
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d retention.dataset;
    v record;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT * INTO STRICT v FROM retention.tenant_values(p_dataset, p_tenants);
    IF v.tenants IS NULL THEN
        RETURN NULL;
    END IF;
    IF cardinality(v.tenants) = 0 THEN
        RETURN 'false';
    END IF;
    RETURN format('t.%I = ANY (%L::%s[])', d.tenant_column, v.tenants, v.col_type);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;   -- read every row instead: slower, never wrong
END
$$;

-- run_unheld(dataset, T): SQL over a row `t` naming the rows no hold active
-- at T covers, written so that the (tenant, time) index finds them without
-- reading the table: the tenant column NULL, or outside the held tenants'
-- values, as ranges between them in the column's own order, e.g.
--   (t."bot_id" IS NULL OR t."bot_id" < '3'::integer OR t."bot_id" > '3'::integer)
-- NULL when it cannot be written so: no tenant column, or an active hold
-- that is not for one whole tenant (every tenant, or one environment).
-- A held tenant that is no value of the column's type, or not as the
-- column prints it, holds no row (holds compare the column's text), so it
-- is left out.
CREATE OR REPLACE FUNCTION retention.run_unheld(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d     retention.dataset;
    v     record;
    v_ok  text[];
    v_col text;
    v_or  text[];
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF d.tenant_column IS NULL OR EXISTS (
           SELECT 1 FROM retention.hold h
            WHERE h.dataset = p_dataset AND (h.tenant IS NULL OR h.environment IS NOT NULL)
              AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp)) THEN
        RETURN NULL;
    END IF;
    -- The held tenants, in the order the column's index keeps them.
    SELECT * INTO STRICT v FROM retention.tenant_values(p_dataset, ARRAY(
        SELECT h.tenant FROM retention.hold h
         WHERE h.dataset = p_dataset
           AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp)));
    v_ok := v.tenants;
    v_col := format('t.%I', d.tenant_column);
    v_or := ARRAY[v_col || ' IS NULL'];
    FOR i IN 1 .. cardinality(v_ok) + 1 LOOP
        v_or := v_or || CASE WHEN cardinality(v_ok) = 0 THEN v_col || ' IS NOT NULL'
                             WHEN i = 1 THEN format('%s < %L::%s', v_col, v_ok[1], v.col_type)
                             WHEN i = cardinality(v_ok) + 1 THEN format('%s > %L::%s', v_col, v_ok[i - 1], v.col_type)
                             ELSE format('(%s > %L::%s AND %s < %L::%s)', v_col, v_ok[i - 1], v.col_type,
                                         v_col, v_ok[i], v.col_type) END;
    END LOOP;
    RETURN '(' || array_to_string(v_or, ' OR ') || ')';
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;   -- read the rows instead: slower, never wrong
END
$$;

-- run_special(dataset): the tenants with a rule of their own (a policy
-- override naming them, or a run-time setting), as typed_tenants() writes
-- them; NULL also when each row carries its own retention
-- (changes_apply_to: new_rows).
CREATE OR REPLACE FUNCTION retention.run_special(p_dataset text)
RETURNS text
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN d.new_rows THEN NULL
                ELSE retention.typed_tenants(d.name, ARRAY(
                         SELECT o.tenant FROM retention.policy_override o WHERE o.dataset = d.name AND o.tenant IS NOT NULL
                         UNION SELECT s.tenant FROM retention.tenant_setting s WHERE s.dataset = d.name)) END
      FROM retention.dataset d WHERE d.name = p_dataset
$$;

-- run_kept_where(dataset, T, default): a condition over a row `t` that
-- every row the run at T keeps meets, written so that indexes find them,
-- for a partition whose rows are all expired but held ones (default
-- false), or for a default partition (true), whose rows are older than
-- every partition premake keeps (so past every retention) or in the
-- future: the held tenants (typed_tenants), or a time at or after the
-- oldest partition premake keeps. NULL when there is no such condition: a
-- hold on a whole environment, or stamped retentions (new_rows), which a
-- row may carry outside the possible ones.
CREATE OR REPLACE FUNCTION retention.run_kept_where(p_dataset text, p_t timestamptz, p_default boolean)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    v_held  text;
    v_back  interval;
    v_first timestamptz;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF d.new_rows OR EXISTS (SELECT 1 FROM retention.hold h
                              WHERE h.dataset = p_dataset AND h.tenant IS NULL
                                AND (h.until IS NULL OR (p_t AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp)) THEN
        RETURN NULL;
    END IF;
    v_held := retention.typed_tenants(p_dataset, ARRAY(
        SELECT h.tenant FROM retention.hold h
         WHERE h.dataset = p_dataset
           AND (h.until IS NULL OR (p_t AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp)));
    IF v_held IS NULL AND EXISTS (SELECT 1 FROM retention.hold h WHERE h.dataset = p_dataset) THEN
        RETURN NULL;
    END IF;
    v_held := coalesce(v_held, 'false');
    IF NOT p_default THEN
        RETURN v_held;
    END IF;
    -- As premake counts back (the same bound): a row before it is past
    -- every retention a row can have.
    SELECT max(k + retention.calendar_slack(k)) INTO v_back FROM retention.possible_keeps(p_dataset) AS k;
    v_first := retention.period_start(d.granularity,
                                      ((p_t AT TIME ZONE 'UTC'::text) - coalesce(v_back, d.keep)) AT TIME ZONE 'UTC'::text,
                                      d.time_zone);
    RETURN format('(t.%I >= %s OR %s)', d.time_column, retention.clock_literal(p_dataset, v_first), v_held);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- ordinary_keeps(dataset): the retentions a row whose tenant has no rule
-- of its own can have: the dataset's keep, and each environment's override.
CREATE OR REPLACE FUNCTION retention.ordinary_keeps(p_dataset text)
RETURNS SETOF interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.keep FROM retention.dataset d WHERE d.name = p_dataset
    UNION ALL
    SELECT o.keep FROM retention.policy_override o WHERE o.dataset = p_dataset AND o.tenant IS NULL
$$;

-- run_ordinary(dataset, T, lower): whether a row at or after `lower` whose
-- tenant has no rule of its own can be expired at T. Its retention is then
-- the dataset's keep or its environment's override, and its deadline is
-- at least lower + that retention (adding an interval never moves a later
-- time before an earlier one). When it cannot, only the rows of the
-- tenants run_special names can be expired, and the run finds those
-- through the index on (tenant, time) instead of reading the partition.
CREATE OR REPLACE FUNCTION retention.run_ordinary(p_dataset text, p_t timestamptz, p_lower timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p_lower IS NULL OR NOT isfinite(p_lower) OR EXISTS (
        SELECT 1 FROM retention.ordinary_keeps(p_dataset) AS k
         WHERE (p_lower AT TIME ZONE 'UTC'::text) + k < (p_t AT TIME ZONE 'UTC'::text))
$$;

-- run_batch(...): removes the expired rows of pages [from, from + pages) of
-- one partition (archiving them first, with an archive) and returns how
-- many, and the next page to do (NULL when the partition is done). A
-- serialization failure or deadlock (a sliding update moving a row the
-- batch deletes) is retried up to 3 times (`retries` says how many it
-- took); any other error, or a lock held past lock_timeout, ends this
-- partition for this run, with a note.
CREATE OR REPLACE FUNCTION retention.run_batch(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                               p_partition regclass, p_from_page bigint, p_pages integer,
                                               p_pred text, p_archive_ok boolean,
                                               OUT removed bigint, OUT next_page bigint, OUT note text,
                                               OUT retries integer, OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    v_name  text := p_partition::text;
    v_state text;
    v_msg   text;
    v_dist  boolean := retention.distributed(p_partition);
    v_pages bigint := p_pages;
BEGIN
    removed := 0;
    retries := 0;
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    IF NOT p_archive_ok THEN
        note := v_name || ': not archived: the archive cannot take the table''s shape (see above)';
        RETURN;
    END IF;
    IF v_dist AND p_from_page >= 0 THEN
        v_pages := retention.slice_step(p_partition, p_pages);   -- slices holding about p_pages pages
    END IF;
    LOOP
        BEGIN
            IF p_from_page > retention.pages_of(p_partition) OR (v_dist AND p_from_page >= retention.slices()) THEN
                RETURN;   -- done: next_page stays NULL
            END IF;
            removed := retention.remove_batch(p_dataset, p_partition, p_t, p_from_page, v_pages, p_pred);
            next_page := CASE WHEN p_from_page >= 0 THEN p_from_page + v_pages
                              WHEN v_dist THEN NULL   -- by index on Citus: every row at once
                              WHEN removed >= p_pages THEN p_from_page END;   -- by index: again while batches are full
            RETURN;
        EXCEPTION
            WHEN serialization_failure OR deadlock_detected THEN
                GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                retries := retries + 1;
                IF retries >= 3 THEN
                    note := retention.error_note(v_name || ' (rows, after 3 tries)', v_state, v_msg);
                    RETURN;
                END IF;
                PERFORM pg_sleep(0.1 * retries);
            WHEN query_canceled THEN
                cancelled := true;
                note := v_name || ' (rows): cancelled (statement_timeout, or pg_cancel_backend)';
                RETURN;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
                note := retention.error_note(v_name || ' (rows)', v_state, v_msg);
                RETURN;
        END;
    END LOOP;
END
$$;

-- run_ordinary_gone(dataset, T, upper): whether every row before `upper`
-- whose tenant has no rule of its own is expired at T (its retention, the
-- dataset's keep or its environment's override, plus calendar slack, has
-- passed since `upper`, with a margin: >= where < would do). Then what
-- the run keeps of such a partition is
-- only rows of tenants with rules of their own (a longer retention) and
-- held rows.
CREATE OR REPLACE FUNCTION retention.run_ordinary_gone(p_dataset text, p_t timestamptz, p_upper timestamptz)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p_upper IS NOT NULL AND isfinite(p_upper) AND NOT EXISTS (
        SELECT 1 FROM retention.ordinary_keeps(p_dataset) AS k
         WHERE (p_upper AT TIME ZONE 'UTC'::text) + k + retention.calendar_slack(k) >= (p_t AT TIME ZONE 'UTC'::text))
$$;

-- few_kept(partition, where, pred, T): how many of the partition's rows
-- the run at T keeps, when that is few: at most 10,000 and a fifth of
-- them, with at least 100 to remove; NULL when it is not. Counts the kept
-- rows among those `where` finds (through an index: run_kept_where), not
-- the partition. (Version 5 made it return the count, so the function is
-- dropped and made again.)
DROP FUNCTION IF EXISTS retention.few_kept(regclass, text, text, timestamptz);
CREATE FUNCTION retention.few_kept(p_partition regclass, p_where text, p_pred text, p_t timestamptz)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    v_n bigint;
BEGIN
    IF retention.distributed(p_partition) THEN
        RETURN NULL;   -- on Citus kept rows are never copied out: the expired ones go row by row
    END IF;
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM ONLY %s t WHERE %s AND NOT coalesce(%s, false) LIMIT 10001) x',
                   p_partition, p_where, p_pred) INTO v_n USING p_t;
    RETURN (SELECT CASE WHEN v_n <= 10000 AND v_n * 5 <= c.reltuples AND c.reltuples - v_n >= 100 THEN v_n END
              FROM pg_class c WHERE c.oid = p_partition);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END
$$;

-- run_copy_kept(dataset, T, lock_timeout, partitions, lower, upper, pred,
-- where, default): for partitions whose rows are all expired but a few
-- (held ones, or a longer retention's: run_partition's `copy`, few_kept),
-- or a default partition whose rows the run keeps few of: in one
-- transaction, the rows the run keeps (NOT pred), found among those
-- `where` finds (run_kept_where: through indexes, so the locks below last
-- as long as a copy of the kept rows, not a read of the partitions), are
-- copied into a new table of the table's shape, with its indexes, which
-- then takes the partitions' place: they are dropped, and it is attached
-- for [lower, upper) (DEFAULT when upper is NULL). One partition: the new
-- one takes its name. Several (neighbours, oldest first, one range
-- without a gap, under one parent: enforce groups them, at most 12 and
-- 10,000 kept rows): one coarser partition named for its range,
-- <table>_p<lower>_<upper>, holds their kept rows, so a hold that keeps a
-- few rows of many old periods costs one partition, not one per period.
-- Returns the rows copied and about how many expired rows went with the
-- old partitions.
-- Locks: ACCESS EXCLUSIVE on the table, its default partition and each
-- partition (each waited for at most lock_timeout), like a drop, held
-- while the kept rows are copied (at most 10,000), the old partitions
-- dropped and the new one attached.
-- (Version 5 made it take several partitions: the one-partition function
-- of version 4 is dropped.)
DROP FUNCTION IF EXISTS retention.run_copy_kept(text, timestamptz, text, regclass, timestamptz, timestamptz,
                                                text, text, regclass);
CREATE OR REPLACE FUNCTION retention.run_copy_kept(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                                   p_partitions regclass[], p_lower timestamptz, p_upper timestamptz,
                                                   p_pred text, p_where text, p_default regclass,
                                                   OUT copied bigint, OUT in_dropped bigint, OUT note text,
                                                   OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_parent regclass;
    v_schema text;
    v_name   text;
    v_new    text;
    v_what   text;
    v_n      bigint;
    v_state  text;
    v_msg    text;
BEGIN
    copied := 0;
    in_dropped := 0;
    cancelled := false;
    v_what := p_partitions[1]::text || CASE WHEN cardinality(p_partitions) > 1
                                            THEN format(' and %s partition(s) after it', cardinality(p_partitions) - 1)
                                            ELSE '' END;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT i.inhparent::regclass, n.nspname, c.relname INTO STRICT v_parent, v_schema, v_name
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE i.inhrelid = p_partitions[1];
    IF EXISTS (SELECT 1 FROM unnest(p_partitions) AS m(part)
                WHERE NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = m.part AND i.inhparent = v_parent)) THEN
        RAISE EXCEPTION 'the partitions are not all of %', v_parent;
    END IF;
    IF cardinality(p_partitions) > 1 THEN
        SELECT left(c.relname, 44) || '_p' || to_char(p_lower AT TIME ZONE d.time_zone, 'YYYYMMDD')
                                  || '_' || to_char(p_upper AT TIME ZONE d.time_zone, 'YYYYMMDD')
          INTO v_name FROM pg_class c WHERE c.oid = v_parent;
    END IF;
    -- The new table first (nobody sees it yet: no lock on the table but
    -- the ACCESS SHARE that LIKE takes), with the table's indexes and its
    -- replica identity (FULL or NOTHING; a key is its own index).
    v_new := format('%I.%I', v_schema, left(v_name, 58) || '_kept');
    EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS
                    INCLUDING STORAGE INCLUDING STATISTICS INCLUDING COMPRESSION INCLUDING INDEXES)', v_new, v_parent);
    PERFORM retention.copy_replica_identity(d.relation::regclass, v_new::regclass);
    -- Then, under the locks a drop takes, the kept rows and the swap. The
    -- new partition has at most 10,000 rows: PostgreSQL checks them against
    -- the bounds as it attaches it.
    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', d.relation);
    IF p_default IS NOT NULL THEN
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', p_default);
    END IF;
    IF v_parent <> d.relation::regclass THEN
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', v_parent);
    END IF;
    FOR i IN 1 .. cardinality(p_partitions) LOOP
        EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', p_partitions[i]);
        EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM ONLY %s t WHERE %s AND NOT coalesce(%s, false)',
                       v_new, retention.insertable_columns(v_new::regclass), retention.insertable_columns(v_new::regclass, 't.'),
                       p_partitions[i], coalesce(p_where, 'true'), p_pred)
            USING p_t;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        copied := copied + v_n;
        in_dropped := in_dropped + (SELECT greatest(c.reltuples::bigint - v_n, 0) FROM pg_class c WHERE c.oid = p_partitions[i]);
    END LOOP;
    -- Dropping a partition detaches it.
    FOR i IN 1 .. cardinality(p_partitions) LOOP
        EXECUTE format('DROP TABLE %s', p_partitions[i]);
    END LOOP;
    IF p_upper IS NULL THEN
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s DEFAULT', v_parent, v_new);
    ELSE
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%s) TO (%s)', v_parent, v_new,
                       CASE WHEN isfinite(p_lower) THEN retention.bound_literal(p_dataset, p_lower) ELSE 'MINVALUE' END,
                       retention.bound_literal(p_dataset, p_upper));
    END IF;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v_new, v_name);
EXCEPTION
    WHEN query_canceled THEN
        copied := 0;
        in_dropped := 0;
        cancelled := true;
        note := v_what || ' (copy of kept rows): cancelled (statement_timeout, or pg_cancel_backend)';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        copied := 0;
        in_dropped := 0;
        note := retention.error_note(v_what || ' (copy of kept rows; their expired rows go row by row)', v_state, v_msg);
END
$$;

-- ---------------------------------------------------------------------------
-- Draining an adopted table's old storage (SPEC §3 "History and the default
-- partition"). retention.adopt() attaches the old table as one partition,
-- [MINVALUE, F). Its rows would otherwise be removed row by row until the
-- last of them expires. A run drains it instead, in bounded steps (one
-- run_drain call each, committed), online:
--   1. start: a copy H, partitioned by period like the table, is created
--      beside it (not attached: the application does not see it), with one
--      partition per period that can still hold a live row and a default
--      partition for older rows (held ones); a trigger on the old storage
--      (drain_capture) records the key of every row the application
--      inserts, updates or deletes there from now on;
--   2. copy: batch_pages pages at a time, the rows not expired at the run's
--      T (t_copy) go into H; the expired ones are never copied;
--   3. indexes: H gets each of the table's indexes, one per step, built
--      once its rows are in (cheaper than maintaining them row by row);
--   4. replay: the recorded keys, 10,000 at a time: H's rows with that key
--      are replaced by the old storage's current row (if not expired);
--   5. swap, in one short transaction: ACCESS EXCLUSIVE on the table and
--      the old storage (waiting at most lock_timeout), the last recorded
--      keys replayed, DETACH the old storage, ATTACH H in its place
--      (PostgreSQL does not scan H: its CHECK proves the bound, and its
--      indexes match the table's), DROP the old storage with its expired
--      rows.
-- After the swap, H's partitions are dropped period by period like any
-- other, at drop cost. The drain needs a unique key of NOT NULL columns on
-- the old storage (to follow changes by); without one, the old storage is
-- enforced row by row as before. It starts over when what it relied on
-- changed: the retention settings (settings_digest), the old storage
-- rewritten, or the table's columns changed. A later run goes on from
-- where an earlier one stopped, first taking out of H the rows that have
-- expired since.
-- ---------------------------------------------------------------------------

-- settings_digest(dataset): a digest of everything a row's expiry depends
-- on besides T: the dataset's settings, its overrides, holds and tenant
-- settings. The drain starts over when it changes.
CREATE OR REPLACE FUNCTION retention.settings_digest(p_dataset text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
    SELECT md5(concat_ws('|',
        (SELECT d::text FROM retention.dataset d WHERE d.name = p_dataset),
        (SELECT string_agg(o::text, ',' ORDER BY o::text) FROM retention.policy_override o WHERE o.dataset = p_dataset),
        (SELECT string_agg(h::text, ',' ORDER BY h::text) FROM retention.hold h WHERE h.dataset = p_dataset),
        (SELECT string_agg(s::text, ',' ORDER BY s::text) FROM retention.tenant_setting s WHERE s.dataset = p_dataset)))
$$;

-- drain_key(relation): the columns of its primary key, or else of a unique
-- index on NOT NULL columns (no expression, not partial); NULL if none.
CREATE OR REPLACE FUNCTION retention.drain_key(p_relation regclass)
RETURNS text[]
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT array_agg(a.attname::text ORDER BY k.n)
      FROM (SELECT i.indkey, i.indnkeyatts
              FROM pg_index i
             WHERE i.indrelid = p_relation AND i.indisunique AND i.indisvalid
               AND i.indpred IS NULL AND i.indexprs IS NULL
               AND NOT EXISTS (SELECT 1 FROM pg_attribute a
                                WHERE a.attrelid = p_relation AND a.attnum = ANY (i.indkey::int2[]) AND NOT a.attnotnull)
             ORDER BY i.indisprimary DESC, i.indnkeyatts, i.indexrelid
             LIMIT 1) i
      CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
      JOIN pg_attribute a ON a.attrelid = p_relation AND a.attnum = k.attnum
     WHERE k.n <= i.indnkeyatts
$$;

-- insertable_columns(relation, prefix): its columns in order, quoted,
-- without generated ones (which cannot be written).
CREATE OR REPLACE FUNCTION retention.insertable_columns(p_relation regclass, p_prefix text DEFAULT '')
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(p_prefix || quote_ident(a.attname), ', ' ORDER BY a.attnum)
      FROM pg_attribute a
     WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
$$;

-- drain_capture(): the trigger on an old storage being drained. Records
-- the key of each row inserted, updated or deleted there, for the replay.
-- SECURITY DEFINER: the application's writes fire it, and only the owner
-- of schema retention may write the log. It writes only a key of the
-- table that fired it, and only while retention.drain names that table.
CREATE OR REPLACE FUNCTION retention.drain_capture()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cols text[];
    v_old  jsonb;
    v_new  jsonb;
BEGIN
    SELECT g.key_columns INTO v_cols FROM retention.drain g WHERE g.source = TG_RELID;
    IF v_cols IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT jsonb_object_agg(c, to_jsonb(OLD) -> c) INTO v_old FROM unnest(v_cols) AS c;
        INSERT INTO retention.drain_log (source, key) VALUES (TG_RELID, v_old);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        SELECT jsonb_object_agg(c, to_jsonb(NEW) -> c) INTO v_new FROM unnest(v_cols) AS c;
        IF v_new IS DISTINCT FROM v_old THEN
            INSERT INTO retention.drain_log (source, key) VALUES (TG_RELID, v_new);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

-- drain_columns(relation): its columns and their types, for comparing the
-- table with its copy.
CREATE OR REPLACE FUNCTION retention.drain_columns(p_relation regclass)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('%I %s %s', a.attname, format_type(a.atttypid, a.atttypmod), a.attgenerated), ', '
                      ORDER BY a.attname)
      FROM pg_attribute a
     WHERE a.attrelid = p_relation AND a.attnum > 0 AND NOT a.attisdropped
$$;

-- drain_next_index(table, copy): the statement that gives the copy the
-- first of the table's indexes (by name) it lacks, NULL when it has them
-- all. A key or unique constraint becomes a constraint of the same kind
-- (ATTACH needs one to match it); any other index, the same index. The
-- copy's index is named after the table's, with `_hist`.
CREATE OR REPLACE FUNCTION retention.drain_next_index(p_table regclass, p_copy regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r      record;
    v_have text[];
    v_name text;
BEGIN
    -- Each index of the copy, as what follows USING in its definition.
    SELECT array_agg(substr(pg_get_indexdef(i.indexrelid), position(' USING ' IN pg_get_indexdef(i.indexrelid)))
                     || CASE WHEN i.indisunique THEN ' unique' ELSE '' END)
      INTO v_have
      FROM pg_index i WHERE i.indrelid = p_copy;
    FOR r IN SELECT i.indexrelid, ic.relname, i.indisunique, k.oid AS con, k.contype,
                    pg_get_indexdef(i.indexrelid) AS def,
                    format(' INDEX %I ON ONLY %s USING ', ic.relname, p_table) AS prefix
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
               LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = p_table
              WHERE i.indrelid = p_table ORDER BY ic.relname LOOP
        CONTINUE WHEN substr(r.def, position(' USING ' IN r.def)) || CASE WHEN r.indisunique THEN ' unique' ELSE '' END
                      = ANY (coalesce(v_have, '{}'));
        IF position(r.prefix IN r.def) = 0 THEN
            RAISE EXCEPTION 'pgretain: cannot read index % of %: %', r.relname, p_table, r.def;
        END IF;
        v_name := left(r.relname, 58) || '_hist';
        IF r.con IS NOT NULL AND r.contype IN ('p', 'u') THEN
            RETURN format('ALTER TABLE %s ADD CONSTRAINT %I %s', p_copy, v_name, pg_get_constraintdef(r.con));
        END IF;
        RETURN replace(r.def, r.prefix, format(' INDEX %I ON %s USING ', v_name, p_copy));
    END LOOP;
    RETURN NULL;
END
$$;

-- drain_replay(dataset, limit): replays up to `limit` recorded keys (all of
-- them when NULL), oldest first: the copy's rows with that key are
-- replaced by the old storage's row, unless it is expired at t_copy.
-- Returns how many keys it took from the log.
CREATE OR REPLACE FUNCTION retention.drain_replay(p_dataset text, p_limit integer)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    g      retention.drain;
    v_keys jsonb[];
    v_n    bigint;
    v_on   text;
    v_cols text;
BEGIN
    SELECT * INTO STRICT g FROM retention.drain WHERE dataset = p_dataset;
    WITH taken AS (
        DELETE FROM retention.drain_log l
         WHERE l.seq IN (SELECT x.seq FROM retention.drain_log x WHERE x.source = g.source
                          ORDER BY x.seq LIMIT p_limit)
        RETURNING l.key)
    SELECT array_agg(DISTINCT t.key), count(*) INTO v_keys, v_n FROM taken t;
    IF v_n = 0 THEN
        RETURN 0;
    END IF;
    SELECT string_agg(format('t.%1$I = k.%1$I', c), ' AND ') INTO v_on FROM unnest(g.key_columns) AS c;
    v_cols := retention.insertable_columns(g.target_name::regclass);
    EXECUTE format('DELETE FROM %s t USING unnest($1) AS j(key), LATERAL jsonb_populate_record(NULL::%s, j.key) k WHERE %s',
                   g.target_name, g.source::regclass, v_on)
        USING v_keys;
    EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM ONLY %s t, unnest($2) AS j(key),
                           LATERAL jsonb_populate_record(NULL::%s, j.key) k
                     WHERE %s AND NOT coalesce(%s, false)',
                   g.target_name, v_cols, retention.insertable_columns(g.target_name::regclass, 't.'), g.source::regclass,
                   g.source::regclass, v_on, retention.run_predicate(p_dataset, g.t_copy))
        USING g.t_copy, v_keys;
    RETURN v_n;
END
$$;

-- drain_changed(dataset, source): why a drain under way cannot go on (it
-- then starts over), or NULL.
CREATE OR REPLACE FUNCTION retention.drain_changed(p_dataset text, p_source regclass)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g retention.drain;
    d retention.dataset;
BEGIN
    SELECT * INTO STRICT g FROM retention.drain WHERE dataset = p_dataset;
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF g.source <> p_source::oid THEN
        RETURN 'the old storage is another table now';
    ELSIF to_regclass(g.target_name) IS NULL THEN
        RETURN format('its copy %s is gone', g.target_name);
    ELSIF (SELECT c.relfilenode FROM pg_class c WHERE c.oid = p_source) <> g.filenode THEN
        RETURN 'the old storage was rewritten (VACUUM FULL, CLUSTER or ALTER TABLE)';
    ELSIF retention.settings_digest(p_dataset) <> g.digest THEN
        RETURN 'the retention settings changed (the policy, a hold or a tenant setting)';
    ELSIF retention.drain_columns(d.relation::regclass) IS DISTINCT FROM retention.drain_columns(g.target_name::regclass) THEN
        RETURN 'the table''s columns changed';
    END IF;
    RETURN NULL;
END
$$;

-- drain_forget(dataset): ends a drain without a swap: its copy dropped,
-- the trigger and the recorded keys removed. The old storage is untouched.
CREATE OR REPLACE FUNCTION retention.drain_forget(p_dataset text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    g retention.drain;
BEGIN
    SELECT * INTO g FROM retention.drain WHERE dataset = p_dataset;
    IF g.dataset IS NULL THEN
        RETURN;
    END IF;
    IF to_regclass(g.target_name) IS NOT NULL THEN
        EXECUTE format('DROP TABLE %s', g.target_name);
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = g.source AND t.tgname = 'pgretain_drain') THEN
        EXECUTE format('DROP TRIGGER pgretain_drain ON %s', g.source::regclass);
    END IF;
    DELETE FROM retention.drain_log WHERE source = g.source;
    DELETE FROM retention.drain WHERE dataset = p_dataset;
END
$$;

-- drain_start(dataset, source, upper, T): step 1 (see above). Returns NULL,
-- or why the old storage cannot be drained.
CREATE OR REPLACE FUNCTION retention.drain_start(p_dataset text, p_source regclass, p_upper timestamptz, p_t timestamptz)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_key    text[] := retention.drain_key(p_source);
    v_schema text;
    v_name   text;
    v_copy   text;
    v_back   interval;
    v_lower  timestamptz;
    v_upper  timestamptz;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF v_key IS NULL THEN
        RETURN format('%s is not drained into period partitions: it has no primary key or unique index on NOT NULL columns to follow the application''s changes by; its expired rows are removed row by row', p_source);
    END IF;
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = d.relation::regclass;
    v_copy := format('%I.%I', v_schema, left(v_name, 55) || '_history');
    IF to_regclass(v_copy) IS NOT NULL THEN
        RETURN format('%s is not drained: a table %s exists already (pgretain drains into it; drop it, or rename it)', p_source, v_copy);
    END IF;
    EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS
                    INCLUDING STORAGE INCLUDING COMMENTS INCLUDING STATISTICS INCLUDING COMPRESSION)
                    PARTITION BY RANGE (%I)', v_copy, d.relation, d.time_column);
    -- Proves at ATTACH that every row is below the bound: no scan.
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT pgretain_adopt_bound CHECK (%I < %s)', v_copy, d.time_column,
                   retention.clock_literal(p_dataset, p_upper));
    EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s DEFAULT', v_schema, left(v_name, 47) || '_history_default', v_copy);
    -- One partition per period that can still hold a live row, at most
    -- 400, named like the table's own (their periods are all before F).
    SELECT max(k + retention.calendar_slack(k)) INTO v_back FROM retention.possible_keeps(p_dataset) AS k;
    v_lower := greatest(
        retention.period_start(d.granularity, ((p_t AT TIME ZONE 'UTC'::text) - coalesce(v_back, d.keep)) AT TIME ZONE 'UTC'::text,
                               d.time_zone),
        retention.period_start(d.granularity,
                               ((p_upper AT TIME ZONE d.time_zone) - ('400 ' || d.granularity)::interval) AT TIME ZONE d.time_zone,
                               d.time_zone));
    WHILE v_lower < p_upper LOOP
        v_upper := least(((v_lower AT TIME ZONE d.time_zone) + ('1 ' || d.granularity)::interval) AT TIME ZONE d.time_zone,
                         p_upper);
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%s) TO (%s)', v_schema,
                       v_name || '_p' || to_char(v_lower AT TIME ZONE d.time_zone, 'YYYYMMDD'), v_copy,
                       retention.bound_literal(p_dataset, v_lower), retention.bound_literal(p_dataset, v_upper));
        v_lower := v_upper;
    END LOOP;
    EXECUTE format('CREATE TRIGGER pgretain_drain AFTER INSERT OR UPDATE OR DELETE ON %s
                    FOR EACH ROW EXECUTE FUNCTION retention.drain_capture()', p_source);
    INSERT INTO retention.drain (dataset, source, source_name, filenode, target_name, key_columns, bound, t_copy,
                                 digest, next_page, pages)
    SELECT p_dataset, p_source, p_source::text, c.relfilenode, v_copy, v_key, p_upper, p_t,
           retention.settings_digest(p_dataset), 0, retention.pages_of(p_source)
      FROM pg_class c WHERE c.oid = p_source;
    RETURN NULL;
END
$$;

-- run_drain(dataset, T, lock_timeout, partition, upper, pages): one step of
-- draining the old storage `partition` (see above), for the run at T.
-- `state` says what it did:
--   none       the partition is not an old storage to drain (not a plain
--              table of the dataset's own starting at MINVALUE);
--   unable     it cannot be drained (`note` says why);
--   started, copying, indexing, replaying: a step done; call again;
--   restarted  what the drain relied on changed (`note`): its copy was
--              dropped; call again to start over;
--   swapped    done: the old storage is replaced by its partitioned copy
--              (`moved` rows copied; about `in_dropped` expired rows
--              dropped with it);
--   failed     this step failed (`note`); the drain stays as it is and
--              the next run goes on.
-- Locks: ACCESS SHARE on the old storage while copying; SHARE ROW
-- EXCLUSIVE on it to create the trigger; for the swap, ACCESS EXCLUSIVE on
-- the table and the old storage, each waited for at most lock_timeout and
-- held for catalog work and the last few recorded keys. The copy is not
-- part of the table until the swap, so nothing else is locked.
CREATE OR REPLACE FUNCTION retention.run_drain(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                               p_source regclass, p_upper timestamptz, p_pages integer,
                                               OUT state text, OUT moved bigint, OUT in_dropped bigint,
                                               OUT note text, OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    g        retention.drain;
    v_parent regclass;
    v_why    text;
    v_sql    text;
    v_n      bigint;
    v_total  bigint;
    v_secs   float8;
    v_state  text;
    v_msg    text;
BEGIN
    moved := 0;
    in_dropped := 0;
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_parent := d.relation::regclass;
    IF NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid
                    WHERE c.oid = p_source AND c.relkind = 'r' AND i.inhparent = v_parent) OR p_upper IS NULL THEN
        state := 'none';
        RETURN;
    END IF;
    SELECT * INTO g FROM retention.drain WHERE dataset = p_dataset;
    IF g.dataset IS NOT NULL THEN
        v_why := CASE WHEN p_t < g.t_copy THEN format('this run''s T (%s) is before the copy''s (%s)', p_t, g.t_copy)
                      ELSE retention.drain_changed(p_dataset, p_source) END;
        IF v_why IS NOT NULL THEN
            PERFORM retention.drain_forget(p_dataset);
            state := 'restarted';
            note := format('%s: its drain starts over: %s', p_source, v_why);
            RETURN;
        END IF;
    END IF;

    -- 1. Start.
    IF g.dataset IS NULL THEN
        note := retention.drain_start(p_dataset, p_source, p_upper, p_t);
        state := CASE WHEN note IS NULL THEN 'started' ELSE 'unable' END;
        RETURN;
    END IF;
    -- A later run goes on: the rows of the copy that have expired since
    -- are taken out (the old storage's are removed by this run, or were).
    IF p_t > g.t_copy THEN
        EXECUTE format('DELETE FROM %s t WHERE %s', g.target_name, retention.run_predicate(p_dataset, p_t)) USING p_t;
        UPDATE retention.drain SET t_copy = p_t WHERE dataset = p_dataset;
        state := 'copying';
        RETURN;
    END IF;

    -- 2. Copy, `p_pages` pages.
    IF g.next_page IS NOT NULL THEN
        IF g.next_page > retention.pages_of(p_source) THEN
            UPDATE retention.drain SET next_page = NULL WHERE dataset = p_dataset;
        ELSE
            EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM ONLY %s t
                             WHERE t.ctid >= $2 AND t.ctid < $3 AND NOT coalesce(%s, false)',
                           g.target_name, retention.insertable_columns(g.target_name::regclass),
                           retention.insertable_columns(g.target_name::regclass, 't.'), p_source,
                           retention.run_predicate(p_dataset, g.t_copy))
                USING g.t_copy, format('(%s,0)', g.next_page)::tid, format('(%s,0)', g.next_page + p_pages)::tid;
            GET DIAGNOSTICS v_n = ROW_COUNT;
            moved := v_n;
            UPDATE retention.drain SET next_page = next_page + p_pages, copied = copied + v_n
             WHERE dataset = p_dataset RETURNING copied INTO v_total;
            v_secs := extract(epoch FROM clock_timestamp() - g.started_at);
            RAISE NOTICE 'pgretain: draining %: % of % pages copied (% rows still within retention, % rows/s), about % s left',
                p_source, least(g.next_page + p_pages, g.pages), g.pages, v_total,
                round(v_total / greatest(v_secs, 0.001)),
                round(v_secs / least(g.next_page + p_pages, greatest(g.pages, 1)) * greatest(g.pages - g.next_page - p_pages, 0));
        END IF;
        state := 'copying';
        RETURN;
    END IF;

    -- 3. Indexes, one per step.
    IF NOT g.indexes_done THEN
        v_sql := retention.drain_next_index(v_parent, g.target_name::regclass);
        IF v_sql IS NULL THEN
            UPDATE retention.drain SET indexes_done = true WHERE dataset = p_dataset;
        ELSE
            RAISE NOTICE 'pgretain: draining %: %', p_source, v_sql;
            EXECUTE v_sql;
        END IF;
        state := 'indexing';
        RETURN;
    END IF;

    -- 4. Replay while many keys are recorded.
    IF (SELECT count(*) FROM (SELECT 1 FROM retention.drain_log l WHERE l.source = g.source LIMIT 1000) x) >= 1000 THEN
        moved := retention.drain_replay(p_dataset, 10000);
        state := 'replaying';
        RETURN;
    END IF;

    -- 5. The swap.
    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', v_parent);
    EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', p_source);
    v_why := retention.drain_changed(p_dataset, p_source);   -- again, under the lock
    IF v_why IS NOT NULL THEN
        PERFORM retention.drain_forget(p_dataset);
        state := 'restarted';
        note := format('%s: its drain starts over: %s', p_source, v_why);
        RETURN;
    END IF;
    IF retention.drain_next_index(v_parent, g.target_name::regclass) IS NOT NULL THEN   -- an index added meanwhile
        UPDATE retention.drain SET indexes_done = false WHERE dataset = p_dataset;
        state := 'indexing';
        RETURN;
    END IF;
    moved := retention.drain_replay(p_dataset, NULL);
    SELECT greatest(c.reltuples, 0)::bigint INTO in_dropped FROM pg_class c WHERE c.oid = p_source;
    in_dropped := greatest(in_dropped - g.copied, 0);
    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', v_parent, p_source);
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (MINVALUE) TO (%s)', v_parent, g.target_name,
                   retention.bound_literal(p_dataset, g.bound));
    EXECUTE format('DROP TABLE %s', p_source);
    DELETE FROM retention.drain_log WHERE source = g.source;
    DELETE FROM retention.drain WHERE dataset = p_dataset;
    PERFORM retention.follow_replica_identity(p_dataset);
    moved := g.copied;
    state := 'swapped';
    note := format('%s: drained: %s row(s) still within retention moved into %s, partitioned by %s; it was dropped with about %s expired row(s) (started %s)',
                   g.source_name, g.copied, g.target_name, d.granularity, in_dropped,
                   to_char(g.started_at, 'YYYY-MM-DD HH24:MI:SS"Z"'));
EXCEPTION
    WHEN query_canceled THEN
        cancelled := true;
        state := 'failed';
        note := p_source::text || ' (drain): cancelled (statement_timeout, or pg_cancel_backend)';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        state := 'failed';
        note := retention.error_note(p_source::text || ' (drain; the next run goes on)', v_state, v_msg);
END
$$;

-- run_archive_expiry(dataset, T, lock_timeout, partition, held, from_page,
-- pages): the archive's rows whose deadline plus the archive's keep is
-- before T, unless held, removed from one archive partition (partitioned
-- by month of the deadline: [lower, upper)), in three ways:
--   * no row of it can be past that (lower + keep at or after T: every
--     deadline is at or after lower): nothing is read; `next_page` NULL;
--   * every row is (upper + keep, plus calendar slack, at or before T:
--     every deadline is before upper) and no active hold keeps one: the
--     partition is dropped (`dropped`; premake_archive makes months only
--     from that of T - keep on, which is after it, so it does not come
--     back);
--   * else the rows of pages [from_page, from_page + pages) are deleted, and
--     `next_page` says where the next batch starts (NULL when done).
-- Returns how many rows it deleted (about how many a drop removed, from
-- the catalog, in `in_dropped`), or why it could not.
-- Locks: a drop takes ACCESS EXCLUSIVE on the archive and the partition,
-- each waited for at most lock_timeout; a batch, ROW EXCLUSIVE.
-- (Version 5 added the drop and the batches: the one-statement function of
-- version 4 is dropped.)
DROP FUNCTION IF EXISTS retention.run_archive_expiry(text, timestamptz, text, regclass, text);
CREATE OR REPLACE FUNCTION retention.run_archive_expiry(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                                        p_partition regclass, p_held text,
                                                        p_from_page bigint, p_pages integer,
                                                        OUT removed bigint, OUT in_dropped bigint, OUT dropped boolean,
                                                        OUT next_page bigint, OUT note text, OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    v_b     text[];
    v_lower timestamptz;
    v_upper timestamptz;
    v_held  boolean := false;
    v_state text;
    v_msg   text;
    v_step  bigint;
    v_range text;
BEGIN
    removed := 0;
    in_dropped := 0;
    dropped := false;
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF p_from_page = 0 THEN
        -- The partition's bounds, as the catalog prints them (under TimeZone
        -- UTC: the SET clause); none for the default partition.
        SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)')
          INTO v_b FROM pg_class c WHERE c.oid = p_partition;
        v_lower := v_b[1]::timestamptz;
        v_upper := v_b[2]::timestamptz;
        IF v_lower IS NOT NULL AND (v_lower AT TIME ZONE 'UTC'::text) + d.archive_keep >= (p_t AT TIME ZONE 'UTC'::text) THEN
            RETURN;   -- nothing in it can be past its deadline plus the keep
        END IF;
        IF v_upper IS NOT NULL
           AND (v_upper AT TIME ZONE 'UTC'::text) + d.archive_keep + retention.calendar_slack(d.archive_keep)
               <= (p_t AT TIME ZONE 'UTC'::text) THEN
            IF p_held IS NOT NULL THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s t WHERE %s)', p_partition, p_held) INTO v_held;
            END IF;
            IF NOT v_held THEN
                SELECT greatest(c.reltuples, 0)::bigint INTO in_dropped FROM pg_class c WHERE c.oid = p_partition;
                EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', d.archive_relation);
                EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', p_partition);
                EXECUTE format('DROP TABLE %s', p_partition);
                dropped := true;
                RETURN;
            END IF;
        END IF;
    END IF;
    IF p_from_page > retention.pages_of(p_partition) THEN
        RETURN;   -- done: next_page stays NULL
    END IF;
    IF retention.distributed(p_partition) THEN
        -- Citus: slices of the month's deadlines, not pages (key_slice).
        v_step := retention.slice_step(p_partition, p_pages);
        IF p_from_page >= retention.slices() THEN
            RETURN;
        END IF;
        v_range := retention.key_slice(p_dataset, p_partition, true, p_from_page, v_step);
    ELSE
        v_step := p_pages;
        v_range := 't.ctid >= $2 AND t.ctid < $3';
    END IF;
    EXECUTE format('DELETE FROM ONLY %s t WHERE %s
                      AND (t.retention_deadline AT TIME ZONE ''UTC''::text) + %L::interval < ($1 AT TIME ZONE ''UTC''::text)%s',
                   p_partition, v_range, d.archive_keep,
                   CASE WHEN p_held IS NULL THEN '' ELSE format(' AND NOT coalesce(%s, false)', p_held) END)
        USING p_t, format('(%s,0)', p_from_page)::tid, format('(%s,0)', p_from_page + v_step)::tid;
    GET DIAGNOSTICS removed = ROW_COUNT;
    next_page := p_from_page + v_step;
EXCEPTION
    WHEN query_canceled THEN
        removed := 0;
        in_dropped := 0;
        dropped := false;
        next_page := NULL;
        cancelled := true;
        note := p_partition::text || ' (archive expiry): cancelled (statement_timeout, or pg_cancel_backend)';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        removed := 0;
        in_dropped := 0;
        dropped := false;
        next_page := NULL;
        note := retention.error_note(p_partition::text || ' (archive expiry)', v_state, v_msg);
END
$$;

-- run_moved_expiry(dataset, T, lock_timeout, relation, held, from_page,
-- pages): run_archive_expiry for a partition moved whole (run_move). Its
-- rows' deadlines are computed, not stored: a row's is its clock plus the
-- retention recorded for its tenant and environment when it moved
-- (moved_keep over keep_map; with new_rows, its stamp), exactly what
-- archive.<table>'s retention_deadline holds for a row archived by copy.
-- Its clock is in [lower, upper) and its retention one of `keeps`, so:
--   * lower + every keep + the archive's keep (less calendar slack) at or
--     after T: nothing in it can be past; nothing is read;
--   * upper + every keep + the archive's keep (plus slack) at or before T,
--     and no active hold keeps a row: it is dropped, and forgotten;
--   * else pages [from_page, from_page + pages) are deleted from, row by
--     row with that deadline; `next_page` says where the next batch starts.
-- Locks: a drop takes ACCESS EXCLUSIVE on `<archive>_moved` and the
-- partition, each waited for at most lock_timeout; a batch, ROW EXCLUSIVE.
CREATE OR REPLACE FUNCTION retention.run_moved_expiry(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                                      p_relation text, p_held text,
                                                      p_from_page bigint, p_pages integer,
                                                      OUT removed bigint, OUT in_dropped bigint, OUT dropped boolean,
                                                      OUT next_page bigint, OUT note text, OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    m       retention.archive_moved;
    v_rel   regclass;
    v_ak    interval;
    v_held  boolean := false;
    v_keep  text;
    v_state text;
    v_msg   text;
BEGIN
    removed := 0;
    in_dropped := 0;
    dropped := false;
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT * INTO STRICT m FROM retention.archive_moved WHERE relation = p_relation AND dataset = p_dataset;
    v_ak := d.archive_keep;
    v_rel := to_regclass(p_relation);
    IF v_rel IS NULL THEN
        -- Dropped by hand: nothing of it is left to expire.
        DELETE FROM retention.archive_moved WHERE relation = p_relation;
        note := p_relation || ' (archive expiry): the moved partition no longer exists; forgotten';
        RETURN;
    END IF;
    IF p_from_page = 0 THEN
        IF (SELECT bool_and((m.lower_bound AT TIME ZONE 'UTC'::text) + k - retention.calendar_slack(k)
                            + v_ak - retention.calendar_slack(v_ak) >= (p_t AT TIME ZONE 'UTC'::text))
              FROM unnest(m.keeps) AS k) THEN
            RETURN;   -- nothing in it can be past its deadline plus the keep
        END IF;
        IF (SELECT bool_and((m.upper_bound AT TIME ZONE 'UTC'::text) + k + retention.calendar_slack(k)
                            + v_ak + retention.calendar_slack(v_ak) <= (p_t AT TIME ZONE 'UTC'::text))
              FROM unnest(m.keeps) AS k) THEN
            IF p_held IS NOT NULL THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM ONLY %s t WHERE %s)', v_rel, p_held) INTO v_held;
            END IF;
            IF NOT v_held THEN
                SELECT greatest(c.reltuples, 0)::bigint INTO in_dropped FROM pg_class c WHERE c.oid = v_rel;
                EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', retention.moved_relation(p_dataset));
                EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', v_rel);
                EXECUTE format('DROP TABLE %s', v_rel);
                DELETE FROM retention.archive_moved WHERE relation = p_relation;
                dropped := true;
                RETURN;
            END IF;
        END IF;
    END IF;
    IF p_from_page > retention.pages_of(v_rel) THEN
        RETURN;   -- done: next_page stays NULL
    END IF;
    v_keep := CASE WHEN m.keep_map IS NULL THEN 't.retention_keep'
                   ELSE format('retention.moved_keep(%L::jsonb, %s, %s)', m.keep_map,
                               retention.column_as_text('t', d.tenant_column),
                               retention.column_as_text('t', d.environment_column)) END;
    EXECUTE format('DELETE FROM ONLY %s t WHERE t.ctid >= $2 AND t.ctid < $3
                      AND ((%s AT TIME ZONE ''UTC''::text) + %s) + %L::interval < ($1 AT TIME ZONE ''UTC''::text)%s',
                   v_rel, retention.clock_of(p_dataset, format('t.%I', d.time_column)), v_keep, v_ak,
                   CASE WHEN p_held IS NULL THEN '' ELSE format(' AND NOT coalesce(%s, false)', p_held) END)
        USING p_t, format('(%s,0)', p_from_page)::tid, format('(%s,0)', p_from_page + p_pages)::tid;
    GET DIAGNOSTICS removed = ROW_COUNT;
    next_page := p_from_page + p_pages;
EXCEPTION
    WHEN query_canceled THEN
        removed := 0;
        in_dropped := 0;
        dropped := false;
        next_page := NULL;
        cancelled := true;
        note := p_relation || ' (archive expiry): cancelled (statement_timeout, or pg_cancel_backend)';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        removed := 0;
        in_dropped := 0;
        dropped := false;
        next_page := NULL;
        note := retention.error_note(p_relation || ' (archive expiry)', v_state, v_msg);
END
$$;

-- keeps_in_force(dataset): the exact text of every retention a source gives
-- now: the dataset's keep, its policy overrides and its tenant settings.
CREATE OR REPLACE FUNCTION retention.keeps_in_force(p_dataset text)
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
SET IntervalStyle = 'postgres'
AS $$
    SELECT d.keep::text FROM retention.dataset d WHERE d.name = p_dataset
    UNION SELECT o.keep::text FROM retention.policy_override o WHERE o.dataset = p_dataset
    UNION SELECT s.keep::text FROM retention.tenant_setting s WHERE s.dataset = p_dataset
$$;

-- run_forget(dataset, T, lock_timeout, xmin, complete): the remembered
-- retentions (keep_history) of a `changes_apply_to: new_rows` dataset that
-- no stored row can carry any more stop counting, so a value a tenant
-- setting had for a minute does not keep partitions from being dropped
-- forever (SPEC §3 "Cost"). The rule (docs/how-it-works.md, "Remembered
-- retentions"):
--   * a value no source gives (keeps_in_force) is marked by the first run
--     that sees it so: `out_of_force_xmax`, the xmax of that run's snapshot;
--     a value in force again loses its mark (here, and where it is written:
--     tenant_setting_check, remember_keep);
--   * a run at T forgets a marked value when
--       - p_xmin, the xmin of the run's first snapshot, is at or past the
--         mark: every transaction that had an xid when the value was seen out
--         of force, and so every one that may have stamped it, had ended
--         before this run looked at a partition;
--       - the run did everything due (p_complete: no partition skipped,
--         nothing left for later), with the value still counted: so no row
--         carrying it whose deadline is before T remains, but held ones,
--       - no hold of the dataset is active at T,
--       - and no row carries it with its time at or after T - value -
--         calendar_slack(value): a row that carries it and is not expired has
--         such a time, whatever it was when the row was stamped (a sliding
--         clock moves it, an update may move it): one range of the time
--         column's index, the default partition included.
-- Returns the values forgotten (exact text). Never changes a row of the
-- table; an error is reported in `note` and forgets nothing.
CREATE OR REPLACE FUNCTION retention.run_forget(p_dataset text, p_t timestamptz, p_lock_timeout text,
                                                p_xmin xid8, p_complete boolean,
                                                OUT forgotten text[], OUT note text, OUT cancelled boolean)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d       retention.dataset;
    h       record;
    v_from  timestamptz;
    v_found boolean;
    v_state text;
    v_msg   text;
    v_force text[];
    v_xmax  xid8;
BEGIN
    forgotten := '{}';
    cancelled := false;
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF NOT d.new_rows THEN   -- all_rows: only the retentions in force count already
        RETURN;
    END IF;
    -- (Read first, then written: on Citus keep_history is a reference
    -- table, and what decides an UPDATE of it is computed here, on the
    -- coordinator, not on each node's copy.)
    v_force := ARRAY(SELECT x FROM retention.keeps_in_force(p_dataset) AS x);
    UPDATE retention.keep_history k SET out_of_force_since = NULL, out_of_force_xmax = NULL
     WHERE k.dataset = p_dataset AND k.out_of_force_xmax IS NOT NULL
       AND k.keep_text = ANY (v_force);
    -- Never forgotten on Citus: a transaction that stamps rows on the
    -- workers need not have a transaction id on the coordinator, so the
    -- xmax below proves nothing there (docs/citus.md).
    IF p_complete AND retention.run_held(p_dataset, p_t) IS NULL
       AND NOT retention.distributed(d.relation::regclass) THEN
        FOR h IN SELECT k.keep, k.keep_text FROM retention.keep_history k
                  WHERE k.dataset = p_dataset AND k.out_of_force_xmax <= p_xmin
                    AND k.keep_text <> ALL (v_force)
                  ORDER BY k.keep_text
        LOOP
            v_from := ((p_t AT TIME ZONE 'UTC'::text) - h.keep - retention.calendar_slack(h.keep)) AT TIME ZONE 'UTC'::text;
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s t WHERE t.%I >= %s AND t.retention_keep::text = $1)',
                           d.relation, d.time_column, retention.clock_literal(p_dataset, v_from))
               INTO v_found USING h.keep_text;
            IF NOT v_found THEN
                DELETE FROM retention.keep_history k
                 WHERE k.dataset = p_dataset AND k.keep_text = h.keep_text AND k.out_of_force_xmax IS NOT NULL;
                IF FOUND THEN
                    forgotten := forgotten || h.keep_text;
                END IF;
            END IF;
        END LOOP;
    END IF;
    -- What is out of force now, and the xmax of a snapshot taken after it
    -- was seen so.
    v_force := ARRAY(SELECT x FROM retention.keeps_in_force(p_dataset) AS x);
    v_xmax := pg_snapshot_xmax(pg_current_snapshot());
    UPDATE retention.keep_history k
       SET out_of_force_since = now(), out_of_force_xmax = v_xmax
     WHERE k.dataset = p_dataset AND k.out_of_force_xmax IS NULL
       AND k.keep_text <> ALL (v_force);
EXCEPTION
    WHEN query_canceled THEN
        forgotten := '{}';
        cancelled := true;
        note := 'remembered retentions: cancelled (statement_timeout, or pg_cancel_backend)';
    WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT;
        forgotten := '{}';
        note := retention.error_note('remembered retentions (none forgotten)', v_state, v_msg);
END
$$;

-- run_finish(...): writes the run's outcome and releases its lock:
--   ok       everything due was done (`p_info` may say how, e.g. a column
--            added to the archive, a retried serialization failure);
--   partial  something was left for the next run (a partition skipped, a
--            failed premake, an archive that could not take rows); the
--            detail says what and why;
--   failed   the run could do nothing, or was cancelled (see the detail).
CREATE OR REPLACE FUNCTION retention.run_finish(p_log bigint, p_dataset text, p_failed boolean, p_notes text[],
                                                p_info text[], p_dropped text[], p_skipped text[], p_deleted bigint,
                                                p_in_dropped bigint, p_archived bigint, p_archive_deleted bigint)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_outcome text := CASE WHEN p_failed THEN 'failed'
                           WHEN cardinality(p_skipped) > 0 OR cardinality(p_notes) > 0 THEN 'partial'
                           ELSE 'ok' END;
BEGIN
    UPDATE retention.run_log
       SET finished_at = clock_timestamp(),
           outcome = v_outcome,
           partitions_dropped = p_dropped, partitions_skipped = p_skipped,
           rows_deleted = p_deleted, rows_in_dropped = p_in_dropped, rows_archived = p_archived,
           archive_rows_deleted = p_archive_deleted,
           detail = NULLIF(concat_ws('; ', detail, NULLIF(array_to_string(p_notes || p_info, '; '), '')), '')
     WHERE id = p_log;
    PERFORM retention.run_release(p_dataset);
    RETURN v_outcome;
END
$$;

-- enforce(dataset, T): one enforcement run (SPEC §3, "The guarantee").
--
-- Which rows go: exactly those matching expired_predicate(dataset):
--   (time AT TIME ZONE 'UTC') + retention < (T AT TIME ZONE 'UTC')
-- where retention is keep_for(...) (or the stamped retention_keep for
-- `changes_apply_to: new_rows`), and no active hold covers the row.
-- T is p_now, or the run's start. Nothing else is removed.
--
-- How, in separate transactions (COMMIT between steps, so a job never holds
-- locks for long and a failed step never undoes the ones before it); every
-- step catches its own errors, so nothing that happens to one partition
-- stops the others, and the run log says what was skipped and why:
--   1. run_start: the dataset's advisory lock (a second run says so and
--      returns), the `running` log row, dead runs marked failed, old log
--      rows trimmed;
--   2. run_premake: future partitions (a failure makes the run `partial`);
--   3. run_context: the predicate, holds and retentions for T, the
--      partitions, the archive's shape;
--   4. run_partition for each partition, oldest first: a drop when every
--      row is expired (committed ten at a time), the few kept rows copied
--      out when only a few are kept (run_copy_kept, neighbours together
--      into one partition), else run_batch, batch_pages pages at a time, when
--      some may be; an adopted table's old storage is drained instead
--      (run_drain: its live rows moved to period partitions, then it is
--      dropped), and removed from row by row only if that cannot be done;
--   5. run_archive_expiry for each archive partition: dropped when all its
--      rows are past their deadline plus the archive's keep, else batches;
--   6. run_forget: remembered retentions no stored row can carry any more
--      are forgotten (changes_apply_to: new_rows);
--   7. run_finish: the outcome, and the lock released.
-- A cancel (statement_timeout, pg_cancel_backend) stops the run where it
-- is: it is logged `failed`, the lock released, the caller's search_path
-- put back, and the cancel reported to the caller. (A cancel that lands
-- between two steps, or a terminated backend, leaves the run `running` and
-- the lock to the session: the next run marks it failed.)
-- Locks: see run_partition; every wait is bounded by the dataset's
-- lock_timeout (retention.dataset.lock_timeout).
-- Settings: search_path is pinned to pg_catalog, pg_temp first thing (a
-- procedure that commits cannot have a SET clause) and the caller's is put
-- back at the end; every step sets the rest (TimeZone, DateStyle,
-- IntervalStyle, lock_timeout) for itself only.
-- Must be CALLed outside a transaction block (as pg_cron does).
CREATE OR REPLACE PROCEDURE retention.enforce(p_dataset text, p_now timestamptz DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    v_caller    text := pg_catalog.current_setting('search_path');
    v_t         timestamptz := coalesce(p_now, pg_catalog.now());
    v_run       record;
    v_ctx       record;
    v_pre       record;
    v_step      record;
    v_batch     record;
    v_exp       record;
    v_forget    record;
    v_xmin      xid8;
    v_page      bigint;
    v_busy      boolean := false;
    v_cancelled boolean := false;
    v_notes     text[] := '{}';   -- what was left undone, and why: the run is `partial`
    v_info      text[] := '{}';   -- what the log should say besides: the run can still be `ok`
    v_dropped   text[] := '{}';
    v_skipped   text[] := '{}';
    v_deleted   bigint := 0;
    v_archived  bigint := 0;
    v_arch_del  bigint := 0;
    v_in_drop   bigint := 0;
    v_retries   integer;
    v_outcome   text;
    v_failed    boolean;
    v_hint      text;
    v_error     text;
    v_archive   boolean;
    v_special   text;     -- run_special: the tenants with rules of their own, typed
    v_narrow    text;
    v_kept_range   text;   -- run_kept_where: what the run keeps, findable by index
    v_kept_default text;
    v_kept_special text;   -- ... of a partition whose ordinary rows are all expired
    v_by_pages  integer := 0;
    v_by_index  integer := 0;
    v_kept      record;
    v_copied_parts integer := 0;
    v_copied_rows  bigint := 0;
    v_drain     record;
    v_dstate    text;
    v_dnote     text;
    v_drained   boolean;
    v_phases    text[];
    v_phase     text;
    v_restarts  integer;
    v_order     integer[];   -- the partitions (indexes into v_ctx.parts) in the order taken
    v_k         integer;
    i           integer;
    v_single    integer[] := '{}';   -- taken again on their own: a group copy failed
    v_few       bigint;      -- rows kept of a partition to copy out (NULL: not one)
    v_special_copy boolean;  -- ... one whose ordinary rows are all expired
    v_parent    oid;
    v_group     integer[] := '{}';   -- neighbouring partitions to copy out together
    v_group_parent oid;
    v_group_kept   bigint := 0;
    v_group_special boolean := false;
    v_merged    integer := 0;
    v_uncommitted integer := 0;   -- drops not yet committed
    v_arch_dropped integer := 0;
    v_arch_in_drop bigint := 0;
    v_moved     integer := 0;     -- partitions moved whole into the archive
    v_moved_rows bigint := 0;     -- ... how many rows (counted just before each move)
    v_exp_parts text[];           -- the archive's months, then its moved partitions
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false);
    -- Each step below is one statement in a block that catches a cancel
    -- (statement_timeout, pg_cancel_backend) wherever it lands in the step,
    -- so the run can still log it and release its lock; the COMMITs are
    -- outside the blocks (a block with a handler cannot commit).

    -- 1. Lock and log.
    BEGIN
        SELECT * INTO v_run FROM retention.run_start(p_dataset, v_t);
    EXCEPTION WHEN query_canceled THEN
        v_cancelled := true;
    END;
    IF v_cancelled THEN   -- nothing logged; the lock released if it was taken
        PERFORM retention.run_release(p_dataset);
        PERFORM pg_catalog.set_config('search_path', v_caller, false);
        COMMIT;
        RAISE EXCEPTION 'pgretain: enforcement of "%" was cancelled before it started', p_dataset
            USING ERRCODE = 'query_canceled';
    END IF;
    COMMIT;
    IF v_run.log_id IS NULL THEN   -- another run is in progress (logged)
        PERFORM pg_catalog.set_config('search_path', v_caller, false);
        RETURN;
    END IF;
    IF v_run.takeover IS NOT NULL THEN
        v_info := v_info || v_run.takeover;
    END IF;
    -- Every transaction with an xid below this had ended before the run
    -- looked at anything (run_forget).
    v_xmin := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());

    -- 2. Future partitions.
    BEGIN
        SELECT * INTO v_pre FROM retention.run_premake(p_dataset, v_t, v_run.lock_timeout);
        v_busy := v_pre.busy;
        v_cancelled := v_pre.cancelled;
        IF v_pre.note IS NOT NULL THEN
            v_notes := v_notes || v_pre.note;
        END IF;
    EXCEPTION WHEN query_canceled THEN
        v_cancelled := true;
    END;
    COMMIT;

    -- 3. What this run needs to know.
    IF NOT v_cancelled THEN
        BEGIN
            SELECT * INTO v_ctx FROM retention.run_context(p_dataset, v_t, v_run.lock_timeout);
            v_cancelled := v_ctx.cancelled;
            v_error := v_ctx.error;
            v_special := retention.run_special(p_dataset);
            v_kept_range := retention.run_kept_where(p_dataset, v_t, false);
            v_kept_default := retention.run_kept_where(p_dataset, v_t, true);
            v_kept_special := CASE WHEN v_special IS NOT NULL AND v_special <> 'false' AND v_kept_range IS NOT NULL
                                   THEN pg_catalog.format('(%s OR %s)', v_special, v_kept_range) END;
        EXCEPTION WHEN query_canceled THEN
            v_cancelled := true;
        END;
        COMMIT;
    END IF;
    IF NOT v_cancelled AND v_error IS NULL THEN
        v_archive := coalesce(v_ctx.archive_ok, true);
        IF v_ctx.archive_note IS NOT NULL THEN
            IF v_archive THEN
                v_info := v_info || v_ctx.archive_note;      -- e.g. a column it added
            ELSE
                v_notes := v_notes || v_ctx.archive_note;    -- it cannot take the rows
            END IF;
        END IF;

        -- 4. Each partition, oldest first. A partition whose few kept rows
        -- are to be copied out (run_partition's `copy`, or few_kept) waits
        -- in a group with its neighbours like it (one range, one parent, at
        -- most 12 partitions and 10,000 kept rows): the group is copied out
        -- in one transaction (run_copy_kept), into one partition for its
        -- range. If that fails, each of them is taken again on its own
        -- (v_single), as any other partition.
        v_order := ARRAY(SELECT pg_catalog.generate_series(1, coalesce(pg_catalog.cardinality(v_ctx.parts), 0)));
        v_k := 0;
        LOOP
            EXIT WHEN v_cancelled;
            IF pg_catalog.cardinality(v_group) > 0
               AND (v_k >= pg_catalog.cardinality(v_order) OR pg_catalog.cardinality(v_group) >= 12
                    OR v_ctx.lowers[v_order[v_k + 1]] IS DISTINCT FROM v_ctx.uppers[v_group[pg_catalog.cardinality(v_group)]]) THEN
                BEGIN
                    SELECT * INTO v_kept
                      FROM retention.run_copy_kept(p_dataset, v_t, v_run.lock_timeout,
                                                   ARRAY(SELECT v_ctx.parts[g] FROM pg_catalog.unnest(v_group) AS g),
                                                   v_ctx.lowers[v_group[1]], v_ctx.uppers[v_group[pg_catalog.cardinality(v_group)]],
                                                   v_ctx.pred, CASE WHEN v_group_special THEN v_kept_special ELSE v_kept_range END,
                                                   v_ctx.default_part);
                    v_cancelled := v_kept.cancelled;
                    IF v_kept.note IS NULL AND NOT v_kept.cancelled THEN
                        v_copied_parts := v_copied_parts + pg_catalog.cardinality(v_group);
                        v_copied_rows := v_copied_rows + v_kept.copied;
                        v_in_drop := v_in_drop + v_kept.in_dropped;
                        IF pg_catalog.cardinality(v_group) > 1 THEN
                            v_merged := v_merged + 1;
                        END IF;
                    ELSIF v_kept.note IS NOT NULL THEN
                        v_info := v_info || v_kept.note;
                        v_order := v_order || v_group;
                        v_single := v_single || v_group;
                    END IF;
                EXCEPTION WHEN query_canceled THEN
                    v_cancelled := true;
                END;
                COMMIT;
                v_uncommitted := 0;
                v_group := '{}';
                v_group_kept := 0;
                v_group_special := false;
                CONTINUE;
            END IF;
            EXIT WHEN v_k >= pg_catalog.cardinality(v_order);
            v_k := v_k + 1;
            i := v_order[v_k];
            BEGIN
                SELECT * INTO v_step
                  FROM retention.run_partition(p_dataset, v_t, v_run.lock_timeout, v_ctx.parts[i], v_ctx.lowers[i],
                                               v_ctx.uppers[i], v_ctx.keeps, v_ctx.pred, v_ctx.held, v_ctx.unheld,
                                               v_ctx.default_part, v_busy, v_archive);
                v_busy := v_step.busy;
                v_cancelled := v_step.cancelled;
                v_archived := v_archived + v_step.archived;
                IF v_step.note IS NOT NULL THEN
                    IF v_step.problem THEN
                        v_notes := v_notes || v_step.note;
                    ELSE
                        v_info := v_info || v_step.note;
                    END IF;
                END IF;
                IF v_step.action = 'dropped' THEN
                    v_dropped := v_dropped || v_ctx.part_names[i];
                    v_in_drop := v_in_drop + v_step.in_dropped;
                ELSIF v_step.action = 'moved' THEN
                    v_moved := v_moved + 1;
                    v_moved_rows := v_moved_rows + v_step.in_dropped;
                ELSIF v_step.action = 'skipped' THEN
                    v_skipped := v_skipped || v_ctx.part_names[i];
                END IF;
            EXCEPTION WHEN query_canceled THEN
                v_cancelled := true;
            END;
            -- Drops are committed ten at a time: one commit (a WAL flush, a
            -- new partition list for every session) for ten partitions,
            -- while the table stays locked for ten drops' time (about 1 ms
            -- each), not for anything else: whatever else the run does
            -- commits them first. (Not with an archive: a drop there first
            -- copies the partition's rows, which must not happen under the
            -- lock of the drop before.)
            IF v_step.action = 'dropped' AND v_uncommitted < 9 AND NOT v_cancelled AND NOT v_ctx.archives THEN
                v_uncommitted := v_uncommitted + 1;
                CONTINUE;
            END IF;
            COMMIT;
            v_uncommitted := 0;
            -- An adopted table's old storage ([MINVALUE, F)) is drained
            -- (run_drain, one step per transaction): its live rows move to
            -- period partitions and it is dropped with its expired ones.
            -- With an archive, its expired rows are archived row by row
            -- first. If it cannot be drained now, its expired rows are
            -- removed row by row, as from any partition.
            v_few := NULL;
            v_special_copy := false;
            v_phases := NULL;
            IF v_cancelled OR v_step.action NOT IN ('rows', 'copy') THEN
                v_phases := '{}';
            ELSIF v_step.action = 'copy' THEN
                v_few := v_step.kept;
            ELSIF v_ctx.lowers[i] IS NULL AND v_kept_default IS NOT NULL AND NOT v_ctx.archives THEN
                v_few := retention.few_kept(v_ctx.parts[i], v_kept_default, v_ctx.pred, v_t);
            -- Every ordinary row expired: what is kept is a few tenants'
            -- longer retention (and held rows).
            ELSIF v_kept_special IS NOT NULL AND NOT v_ctx.archives
                  AND retention.run_ordinary_gone(p_dataset, v_t, v_ctx.uppers[i]) THEN
                v_few := retention.few_kept(v_ctx.parts[i], v_kept_special, v_ctx.pred, v_t);
                v_special_copy := v_few IS NOT NULL;
            END IF;
            v_phases := coalesce(v_phases,
                                 CASE WHEN v_few IS NOT NULL THEN '{copy,rows}'::text[]
                                      WHEN v_ctx.lowers[i] IS DISTINCT FROM '-infinity'::timestamptz THEN '{rows}'::text[]
                                      WHEN v_ctx.archives THEN '{rows,drain}'::text[]
                                      ELSE '{drain,rows}'::text[] END);
            -- A period partition to copy out waits for its neighbours (above).
            IF v_few IS NOT NULL AND pg_catalog.isfinite(v_ctx.lowers[i]) AND v_ctx.uppers[i] IS NOT NULL
               AND NOT i = ANY (v_single) THEN
                v_parent := (SELECT h.inhparent FROM pg_catalog.pg_inherits h WHERE h.inhrelid = v_ctx.parts[i]);
                IF pg_catalog.cardinality(v_group) = 0
                   OR (v_parent = v_group_parent AND v_group_kept + v_few <= 10000) THEN
                    v_group := v_group || i;
                    v_group_parent := v_parent;
                    v_group_kept := v_group_kept + v_few;
                    v_group_special := v_group_special OR v_special_copy;
                    CONTINUE;
                END IF;
                -- It does not fit: copied on its own, now.
            END IF;
            v_drained := false;
            FOREACH v_phase IN ARRAY v_phases LOOP
                EXIT WHEN v_cancelled OR v_drained;
                IF v_phase = 'copy' THEN
                    BEGIN
                        SELECT * INTO v_kept
                          FROM retention.run_copy_kept(p_dataset, v_t, v_run.lock_timeout, ARRAY[v_ctx.parts[i]], v_ctx.lowers[i],
                                                       v_ctx.uppers[i], v_ctx.pred,
                                                       CASE WHEN v_ctx.lowers[i] IS NULL THEN v_kept_default
                                                            WHEN v_special_copy THEN v_kept_special
                                                            ELSE v_kept_range END,
                                                       v_ctx.default_part);
                        v_cancelled := v_kept.cancelled;
                        IF v_kept.note IS NULL AND NOT v_kept.cancelled THEN
                            IF v_ctx.parts[i] = v_ctx.default_part THEN   -- a new default partition
                                v_ctx.default_part := (SELECT r.partition FROM retention.ranges(p_dataset) r
                                                        WHERE r.lower_bound IS NULL);
                            END IF;
                            v_drained := true;
                            v_copied_parts := v_copied_parts + 1;
                            v_copied_rows := v_copied_rows + v_kept.copied;
                            v_in_drop := v_in_drop + v_kept.in_dropped;
                        ELSIF v_kept.note IS NOT NULL THEN
                            v_info := v_info || v_kept.note;
                        END IF;
                    EXCEPTION WHEN query_canceled THEN
                        v_cancelled := true;
                    END;
                    COMMIT;
                    CONTINUE;
                END IF;
                IF v_phase = 'drain' THEN
                    v_restarts := 0;
                    LOOP
                        v_dstate := 'failed';
                        v_dnote := NULL;
                        BEGIN
                            SELECT * INTO v_drain
                              FROM retention.run_drain(p_dataset, v_t, v_run.lock_timeout, v_ctx.parts[i],
                                                       v_ctx.uppers[i], v_run.batch_pages);
                            v_cancelled := v_drain.cancelled;
                            v_dstate := v_drain.state;
                            v_dnote := v_drain.note;
                        EXCEPTION WHEN query_canceled THEN
                            v_cancelled := true;
                        END;
                        COMMIT;
                        EXIT WHEN v_cancelled OR v_dstate IN ('none', 'unable', 'failed', 'swapped');
                        IF v_dstate = 'restarted' THEN
                            v_info := v_info || v_dnote;
                            v_restarts := v_restarts + 1;
                            EXIT WHEN v_restarts > 1;
                        END IF;
                    END LOOP;
                    IF v_dstate = 'swapped' THEN
                        v_drained := true;
                        v_dropped := v_dropped || v_ctx.part_names[i];
                        v_in_drop := v_in_drop + v_drain.in_dropped;
                    END IF;
                    IF v_dnote IS NOT NULL AND v_dstate <> 'restarted' THEN
                        v_info := v_info || v_dnote;
                    END IF;
                    CONTINUE;
                END IF;
                -- When only tenants with a rule of their own can have
                -- expired rows here, they are found through the index on
                -- the tenant (10,000 rows a batch), not by reading every
                -- page (batch_pages pages a batch).
                BEGIN
                    v_narrow := CASE WHEN v_special IS NOT NULL
                                      AND NOT retention.run_ordinary(p_dataset, v_t, v_ctx.lowers[i])
                                     THEN v_special END;
                EXCEPTION WHEN OTHERS THEN
                    v_narrow := NULL;
                END;
                IF v_narrow IS NULL THEN
                    v_by_pages := v_by_pages + 1;
                ELSE
                    v_by_index := v_by_index + 1;
                END IF;
                v_page := CASE WHEN v_narrow IS NULL THEN 0 ELSE -1 END;
                v_retries := 0;
                WHILE v_page IS NOT NULL AND NOT v_cancelled LOOP
                    BEGIN
                        SELECT * INTO v_batch
                          FROM retention.run_batch(p_dataset, v_t, v_run.lock_timeout, v_ctx.parts[i], v_page,
                                                   CASE WHEN v_narrow IS NULL THEN v_run.batch_pages ELSE 10000 END,
                                                   CASE WHEN v_narrow IS NULL THEN v_ctx.pred
                                                        ELSE v_narrow || ' AND ' || v_ctx.pred END,
                                                   v_archive);
                        v_cancelled := v_batch.cancelled;
                        v_retries := v_retries + v_batch.retries;
                        IF v_ctx.archives THEN
                            v_archived := v_archived + v_batch.removed;
                        ELSE
                            v_deleted := v_deleted + v_batch.removed;
                        END IF;
                        IF v_batch.note IS NOT NULL THEN
                            v_skipped := v_skipped || (v_ctx.part_names[i] || ' (rows)');
                            v_notes := v_notes || v_batch.note;
                        END IF;
                        v_page := v_batch.next_page;
                    EXCEPTION WHEN query_canceled THEN
                        v_cancelled := true;
                    END;
                    COMMIT;
                END LOOP;
                IF v_retries > 0 THEN
                    v_info := v_info || pg_catalog.format('%s (rows): %s serialization failure(s) or deadlock(s), retried',
                                                          v_ctx.part_names[i], v_retries);
                END IF;
            END LOOP;
        END LOOP;
        COMMIT;   -- the last drops

        -- 5. The archive: rows whose deadline plus archive_keep has passed;
        -- a partition all of whose rows have is dropped, else its rows go
        -- batch_pages pages a transaction (run_archive_expiry).
        -- The moved partitions likewise, each by its own bounds and
        -- recorded retentions (run_moved_expiry).
        v_exp_parts := coalesce(v_ctx.archive_part_names, '{}')
                       || ARRAY(SELECT m.relation FROM retention.archive_moved m
                                 WHERE m.dataset = p_dataset ORDER BY m.lower_bound, m.relation);
        FOR i IN 1 .. pg_catalog.cardinality(v_exp_parts) LOOP
            v_page := 0;
            WHILE v_page IS NOT NULL AND NOT v_cancelled LOOP
                BEGIN
                    IF i <= coalesce(pg_catalog.cardinality(v_ctx.archive_parts), 0) THEN
                        SELECT * INTO v_exp
                          FROM retention.run_archive_expiry(p_dataset, v_t, v_run.lock_timeout, v_ctx.archive_parts[i],
                                                            v_ctx.held, v_page, v_run.batch_pages);
                    ELSE
                        SELECT * INTO v_exp
                          FROM retention.run_moved_expiry(p_dataset, v_t, v_run.lock_timeout, v_exp_parts[i],
                                                          v_ctx.held, v_page, v_run.batch_pages);
                    END IF;
                    v_cancelled := v_exp.cancelled;
                    v_arch_del := v_arch_del + v_exp.removed;
                    v_page := v_exp.next_page;
                    IF v_exp.dropped THEN
                        v_arch_dropped := v_arch_dropped + 1;
                        v_arch_in_drop := v_arch_in_drop + v_exp.in_dropped;
                        v_dropped := v_dropped || v_exp_parts[i];
                    END IF;
                    IF v_exp.note IS NOT NULL THEN
                        v_skipped := v_skipped || v_exp_parts[i];
                        v_notes := v_notes || v_exp.note;
                    END IF;
                EXCEPTION WHEN query_canceled THEN
                    v_cancelled := true;
                    v_page := NULL;
                END;
                COMMIT;
            END LOOP;
        END LOOP;
        IF v_moved > 0 THEN
            v_info := v_info || pg_catalog.format(
                '%s partition(s) moved whole into %s (%s row(s), counted, none copied): every row in them had expired',
                v_moved, retention.moved_relation(p_dataset), v_moved_rows);
        END IF;
        IF v_arch_dropped > 0 THEN
            v_info := v_info || pg_catalog.format(
                '%s archive partition(s) dropped whole (about %s row(s)): every row''s deadline plus the archive''s keep had passed',
                v_arch_dropped, v_arch_in_drop);
        END IF;
        IF v_copied_parts > 0 THEN
            v_info := v_info || pg_catalog.format(
                '%s partition(s) held only a few rows to keep (held, a longer retention''s, or in a default partition) besides expired ones: their %s row(s) were copied to a new partition of the same range, and the rest dropped with the old one%s',
                v_copied_parts, v_copied_rows,
                CASE WHEN v_merged > 0
                     THEN pg_catalog.format('; neighbouring ones were copied together, into %s partition(s) each spanning their range', v_merged)
                     ELSE '' END);
        END IF;
        IF v_by_index > 0 THEN
            v_info := v_info || pg_catalog.format(
                'rows found through the tenant index in %s partition(s), where only tenants with rules of their own could have expired rows; read page by page in %s',
                v_by_index, v_by_pages);
        END IF;

        -- 6. Remembered retentions no stored row can carry any more.
        IF NOT v_cancelled THEN
            BEGIN
                SELECT * INTO v_forget
                  FROM retention.run_forget(p_dataset, v_t, v_run.lock_timeout, v_xmin,
                                            pg_catalog.cardinality(v_skipped) = 0 AND pg_catalog.cardinality(v_notes) = 0);
                v_cancelled := v_forget.cancelled;
                IF v_forget.note IS NOT NULL THEN
                    v_info := v_info || v_forget.note;
                END IF;
                IF pg_catalog.cardinality(v_forget.forgotten) > 0 THEN
                    v_info := v_info || pg_catalog.format('retention %s forgotten: no stored row can carry it any more',
                                                          pg_catalog.array_to_string(v_forget.forgotten, ', '));
                END IF;
            EXCEPTION WHEN query_canceled THEN
                v_cancelled := true;
            END;
            COMMIT;
        END IF;
    ELSIF v_error IS NOT NULL THEN
        v_notes := v_notes || v_error;
    END IF;
    IF v_cancelled THEN
        v_error := 'cancelled (statement_timeout, or pg_cancel_backend): the run stopped where it was; what it did is kept';
        v_notes := v_notes || v_error;
    END IF;

    -- 7. The outcome; the lock released (a second cancel here still
    -- releases the lock, and the next run marks this one failed).
    BEGIN
        v_outcome := retention.run_finish(v_run.log_id, p_dataset, v_error IS NOT NULL, v_notes, v_info, v_dropped,
                                          v_skipped, v_deleted, v_in_drop, v_archived, v_arch_del);
    EXCEPTION WHEN query_canceled THEN
        PERFORM retention.run_release(p_dataset);
        v_cancelled := true;
        v_outcome := 'failed';
    END;
    COMMIT;
    v_failed := v_outcome = 'failed';   -- decided before the caller's search_path is back
    v_hint := pg_catalog.format('the detail is in retention.run_log (id %s); the next run tries again', v_run.log_id);
    -- The caller's search_path back, committed (a setting made in a
    -- transaction that then fails is undone with it). Nothing is evaluated
    -- from here on but the message's variables.
    PERFORM pg_catalog.set_config('search_path', v_caller, false);
    COMMIT;
    IF v_cancelled THEN
        RAISE EXCEPTION 'pgretain: enforcement of "%" was cancelled', p_dataset
            USING ERRCODE = 'query_canceled', HINT = v_hint;
    ELSIF v_failed THEN
        RAISE EXCEPTION 'pgretain: enforcement of "%" failed: %', p_dataset, v_error
            USING HINT = v_hint;
    END IF;
END
$$;

-- erase_one(dataset, column, key, at, label): the erasure of one dataset,
-- shared by erase() and erase_subject(): removes every row of the dataset
-- whose `column` equals key, in the table and its archive, except rows
-- under a hold active at `at`, and logs it (one run_log row) with the key's
-- SHA-256 hash, never the key (`<label> sha256 = <hash>`). The key is
-- compared as a value of the column's own type (`t.col = $2::uuid`), so
-- the column's index serves; a key that is no such value matches nothing.
--
-- One statement over the table and the archive (data-modifying CTEs): with
-- no hold active on the dataset (the usual case), just the deletes, one
-- pass over the rows that have the key; with one, the deletes of the rows
-- no hold covers and the count of those it keeps, from the same snapshot.
-- Internal: not granted to anyone; the SECURITY DEFINER callers run it as
-- the owner of schema retention.
CREATE OR REPLACE FUNCTION retention.erase_one(p_dataset text, p_column text, p_key text,
                                               p_at timestamptz, p_label text)
RETURNS TABLE (rows_deleted bigint, archive_rows_deleted bigint, rows_kept_by_hold bigint, holds text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d        retention.dataset;
    v_held   text;      -- SQL over a row `t` and $1: an active hold covers it
    v_active boolean;   -- a hold is active on the dataset at p_at
    v_type   text;
    v_match  text;      -- SQL over a row `t` and $2: the row has the key
    v_sql    text;
    v_note   text;
    v_hash   text := encode(sha256(convert_to(p_key, 'UTF8')), 'hex');
    v_archives text[];  -- the archive, and its moved partitions' parent once there is one
    v_gone   text;
    v_kept   text;
BEGIN
    SELECT * INTO d FROM retention.dataset WHERE name = p_dataset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgretain: unknown dataset "%"', p_dataset USING ERRCODE = 'undefined_object';
    END IF;
    v_archives := ARRAY(SELECT x FROM unnest(ARRAY[d.archive_relation, retention.moved_relation(p_dataset)]) AS x
                         WHERE x IS NOT NULL AND to_regclass(x) IS NOT NULL);
    SELECT format_type(a.atttypid, a.atttypmod) INTO v_type
      FROM pg_attribute a
     WHERE a.attrelid = d.relation::regclass AND a.attname = p_column AND a.attnum > 0 AND NOT a.attisdropped;
    IF v_type IS NULL THEN
        RAISE EXCEPTION 'pgretain: dataset "%" has no column "%" to erase by', p_dataset, p_column
            USING ERRCODE = 'undefined_column';
    END IF;
    -- On Citus a function that reads tables cannot decide what a DELETE on a
    -- distributed table removes: the holds active at p_at are written out
    -- instead (run_held: the same rule as is_held).
    v_held := CASE WHEN retention.distributed(d.relation::regclass)
                   THEN '(' || coalesce(retention.run_held(p_dataset, p_at), 'false') || ')'
                   ELSE retention.held_predicate(p_dataset) END;
    v_active := EXISTS (SELECT 1 FROM retention.hold h
                         WHERE h.dataset = p_dataset
                           AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp));
    v_match := format('t.%I = $2::%s', p_column, v_type);
    rows_deleted := 0;
    archive_rows_deleted := 0;
    rows_kept_by_hold := 0;
    BEGIN
        EXECUTE format('SELECT $1::%s', v_type) USING p_key;
    EXCEPTION WHEN data_exception THEN
        v_note := format('the key is not a valid %s, so no row can match', v_type);
    END;
    IF v_note IS NULL THEN
        -- e.g., for a dataset with an archive and an active hold:
        --   WITH gone AS (DELETE FROM "app"."sessions" t WHERE t."conversation_id" = $2::uuid
        --                 AND NOT retention.is_held(...) RETURNING 1),
        --        gone_archive1 AS (DELETE FROM "archive"."sessions" t WHERE ... RETURNING 1),
        --        kept AS (SELECT 1 FROM "app"."sessions" t WHERE ... AND retention.is_held(...)),
        --        kept_archive1 AS (SELECT 1 FROM "archive"."sessions" t WHERE ... AND retention.is_held(...))
        --   SELECT (SELECT count(*) FROM gone), 0::bigint + (SELECT count(*) FROM gone_archive1),
        --          (SELECT count(*) FROM kept) + (SELECT count(*) FROM kept_archive1)
        -- (and the same two for `<archive>_moved`, the partitions moved
        -- into the archive whole, once there is one)
        v_sql := format('WITH gone AS (DELETE FROM %s t WHERE %s%s RETURNING 1)',
                        d.relation, v_match, CASE WHEN v_active THEN ' AND NOT ' || v_held ELSE '' END);
        v_gone := '0::bigint';
        v_kept := '(SELECT count(*) FROM kept)';
        FOR i IN 1 .. coalesce(cardinality(v_archives), 0) LOOP
            v_sql := v_sql || format(', gone_archive%s AS (DELETE FROM %s t WHERE %s%s RETURNING 1)',
                                     i, v_archives[i], v_match,
                                     CASE WHEN v_active THEN ' AND NOT ' || v_held ELSE '' END);
            v_gone := v_gone || format(' + (SELECT count(*) FROM gone_archive%s)', i);
            IF v_active THEN
                v_sql := v_sql || format(', kept_archive%s AS (SELECT 1 FROM %s t WHERE %s AND %s)',
                                         i, v_archives[i], v_match, v_held);
                v_kept := v_kept || format(' + (SELECT count(*) FROM kept_archive%s)', i);
            END IF;
        END LOOP;
        IF v_active THEN
            v_sql := v_sql || format(', kept AS (SELECT 1 FROM %s t WHERE %s AND %s)', d.relation, v_match, v_held);
        END IF;
        v_sql := v_sql || format(' SELECT (SELECT count(*) FROM gone), %s, %s',
                                 v_gone, CASE WHEN v_active THEN v_kept ELSE '0::bigint' END);
        EXECUTE v_sql INTO rows_deleted, archive_rows_deleted, rows_kept_by_hold USING p_at, p_key;
    END IF;
    SELECT string_agg(DISTINCT h.reason, '; ' ORDER BY h.reason) INTO holds
      FROM retention.hold h
     WHERE rows_kept_by_hold > 0 AND h.dataset = p_dataset
       AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC'::text) < (h.until + 1)::timestamp);
    INSERT INTO retention.run_log (dataset, action, reference_time, finished_at, outcome,
                                   rows_deleted, archive_rows_deleted, rows_kept_by_hold, detail)
        VALUES (p_dataset, 'erase', p_at, clock_timestamp(), 'ok', rows_deleted, archive_rows_deleted,
                rows_kept_by_hold, p_label || ' sha256 = ' || v_hash
                                   || CASE WHEN v_note IS NOT NULL THEN '; ' || v_note ELSE '' END
                                   || CASE WHEN holds IS NOT NULL THEN '; kept by hold: ' || holds ELSE '' END);
    RETURN NEXT;
END
$$;

-- erase(dataset, key): on-demand erasure ("delete the session at any
-- point"): removes every row of the dataset whose erase_by column equals
-- key, in the table and its archive, except rows under an active hold,
-- which a hold keeps (erase_one). Logs the erasure with the key's SHA-256
-- hash, never the key. Returns what it did. SECURITY DEFINER: the
-- application calls it, and it deletes and logs as the owner of schema
-- retention.
CREATE OR REPLACE FUNCTION retention.erase(p_dataset text, p_key text)
RETURNS TABLE (rows_deleted bigint, archive_rows_deleted bigint, rows_kept_by_hold bigint, holds text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    d retention.dataset;
BEGIN
    SELECT * INTO d FROM retention.dataset WHERE name = p_dataset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgretain: unknown dataset "%"', p_dataset USING ERRCODE = 'undefined_object';
    END IF;
    IF d.erase_column IS NULL THEN
        RAISE EXCEPTION 'pgretain: dataset "%" has no erase_by column', p_dataset
            USING ERRCODE = 'feature_not_supported', HINT = 'add erase_by to the dataset in the policy';
    END IF;
    RETURN QUERY SELECT * FROM retention.erase_one(p_dataset, d.erase_column, p_key, now(), 'erase_by');
END
$$;

-- erase_subject(subject, key): erasure across datasets by one key (the
-- policy's `subjects`, GDPR art. 17): for every dataset of the subject
-- (retention.subject), in the order of their names, removes the rows whose
-- subject column equals key, in the table and its archive, except rows
-- under an active hold (erase_one). One call, so one transaction: if the
-- erasure of one dataset fails, nothing is erased from any. One run_log row
-- per dataset (`subject <name>: <column> sha256 = <hash>`, never the key)
-- and one returned row per dataset. SECURITY DEFINER, like erase().
CREATE OR REPLACE FUNCTION retention.erase_subject(p_subject text, p_key text)
RETURNS TABLE (dataset text, rows_deleted bigint, archive_rows_deleted bigint, rows_kept_by_hold bigint, holds text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC'
SET DateStyle = 'ISO, YMD'
SET IntervalStyle = 'postgres'
AS $$
DECLARE
    s     record;
    v_now timestamptz := now();
    v_any boolean := false;
BEGIN
    FOR s IN SELECT r.dataset AS name, r.column_name FROM retention.subject r
              WHERE r.name = p_subject ORDER BY r.dataset LOOP
        v_any := true;
        RETURN QUERY SELECT s.name, e.rows_deleted, e.archive_rows_deleted, e.rows_kept_by_hold, e.holds
                       FROM retention.erase_one(s.name, s.column_name, p_key, v_now,
                                                'subject ' || p_subject || ': ' || s.column_name) e;
    END LOOP;
    IF NOT v_any THEN
        RAISE EXCEPTION 'pgretain: unknown subject "%"', p_subject
            USING ERRCODE = 'undefined_object',
                  HINT = coalesce('the subjects are: ' || (SELECT string_agg(DISTINCT r.name, ', ' ORDER BY r.name)
                                                            FROM retention.subject r),
                                  'the policy defines no subjects');
    END IF;
END
$$;

-- Nobody but the owner of schema retention executes its routines unless a
-- migration grants it (see the access block at the end of each migration).
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA retention FROM PUBLIC;
