-- ---------------------------------------------------------------------------
-- pgretain runtime, version 1: the `retention` schema's machinery.
--
-- Everything pgretain needs in the database lives in schema `retention`:
--   retention.dataset          one row per policy dataset (written by migrations only)
--   retention.environment      the allowed environment values
--   retention.policy_override  policy overrides, versioned in git (migrations only)
--   retention.hold             legal holds (migrations only)
--   retention.tenant_setting   run-time per-tenant settings, written by the application
--   retention.keep_history     every retention a row could have been stamped with
--   retention.run_log          one row per enforcement run or erasure: the evidence
-- and the functions below. Dates are computed in UTC, whatever the session's
-- TimeZone: a row's deadline is (time AT TIME ZONE 'UTC') + retention.
-- Every statement is idempotent: re-running this migration changes nothing.
-- ---------------------------------------------------------------------------

CREATE SCHEMA IF NOT EXISTS retention;
COMMENT ON SCHEMA retention IS 'pgretain: data-retention machinery (generated; do not edit by hand)';

CREATE TABLE IF NOT EXISTS retention.dataset (
    name               text PRIMARY KEY,
    relation           text NOT NULL UNIQUE,      -- the partitioned table, quoted: "app"."sessions"
    time_column        text NOT NULL,             -- the retention clock (timestamptz)
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

CREATE TABLE IF NOT EXISTS retention.keep_history (
    dataset text NOT NULL,
    keep    interval NOT NULL,
    PRIMARY KEY (dataset, keep)
);

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
    partitions_skipped   text[] NOT NULL DEFAULT '{}',   -- left for the next run (lock timeout)
    rows_deleted         bigint NOT NULL DEFAULT 0,      -- removed row by row
    rows_in_dropped      bigint NOT NULL DEFAULT 0,      -- estimated rows of dropped partitions
    rows_archived        bigint NOT NULL DEFAULT 0,
    archive_rows_deleted bigint NOT NULL DEFAULT 0,
    rows_kept_by_hold    bigint NOT NULL DEFAULT 0,      -- erase: rows a hold kept
    detail               text
);
CREATE INDEX IF NOT EXISTS run_log_dataset_started ON retention.run_log (dataset, started_at);

-- keep_for(dataset, tenant, environment): the retention in force for a row
-- (SPEC §3), in this order, the first that applies:
--   1. (holds are checked separately, by is_held)
--   2. the most specific policy override naming the tenant
--      (tenant and environment beats tenant alone);
--   3. the run-time tenant setting (environment-specific beats all-environments);
--   4. a policy override for the environment;
--   5. the dataset's keep.
-- No SET clause, so the planner can inline it into the enforcement queries;
-- every name is schema-qualified instead.
CREATE OR REPLACE FUNCTION retention.keep_for(p_dataset text, p_tenant text, p_environment text)
RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT coalesce(
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
        (SELECT d.keep FROM retention.dataset d WHERE d.name = p_dataset))
$$;

-- is_held(dataset, tenant, environment, at): whether an active legal hold
-- covers a row. A hold is active through the end of its `until` day (UTC).
CREATE OR REPLACE FUNCTION retention.is_held(p_dataset text, p_tenant text, p_environment text, p_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM retention.hold h
         WHERE h.dataset = p_dataset
           AND (h.tenant IS NULL OR h.tenant = p_tenant)
           AND (h.environment IS NULL OR h.environment = p_environment)
           AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC') < (h.until + 1)::timestamp))
$$;

-- calendar_slack(r): how far calendar arithmetic can move a deadline. Adding
-- months clamps to the month's end (Jan 31 + 1 month = Feb 28), so two times
-- less than a day apart can get deadlines up to 3 days apart in either order.
-- Partition-level decisions add this slack so they are never wrong; the
-- row-level predicate is always exact.
CREATE OR REPLACE FUNCTION retention.calendar_slack(p_keep interval)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN date_part('year', p_keep) <> 0 OR date_part('month', p_keep) <> 0
                THEN interval '4 days' ELSE interval '0' END
$$;

-- possible_keeps(dataset): every retention a row of the dataset can have at
-- this moment: the dataset's keep, its overrides and tenant settings, and, for
-- `changes_apply_to: new_rows`, every value ever stamped.
CREATE OR REPLACE FUNCTION retention.possible_keeps(p_dataset text)
RETURNS SETOF interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.keep FROM retention.dataset d WHERE d.name = p_dataset
    UNION SELECT o.keep FROM retention.policy_override o WHERE o.dataset = p_dataset
    UNION SELECT s.keep FROM retention.tenant_setting s WHERE s.dataset = p_dataset
    UNION SELECT h.keep FROM retention.keep_history h JOIN retention.dataset d ON d.name = h.dataset
           WHERE h.dataset = p_dataset AND d.new_rows
$$;

-- tenant_setting_check: run-time settings must stay within the dataset's
-- bounds; anything else is rejected with a message the application can show.
CREATE OR REPLACE FUNCTION retention.tenant_setting_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
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
    IF NEW.keep <= interval '0'
       OR (d.min_keep IS NOT NULL AND NEW.keep < d.min_keep)
       OR (d.max_keep IS NOT NULL AND NEW.keep > d.max_keep) THEN
        RAISE EXCEPTION 'pgretain: retention % for dataset "%" is outside its bounds', NEW.keep, NEW.dataset
            USING ERRCODE = 'check_violation',
                  HINT = format('choose a retention between %s and %s',
                                coalesce(d.min_keep::text, 'a positive interval'),
                                coalesce(d.max_keep::text, 'any length'));
    END IF;
    NEW.updated_at := now();
    INSERT INTO retention.keep_history (dataset, keep) VALUES (NEW.dataset, NEW.keep)
        ON CONFLICT DO NOTHING;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER tenant_setting_check
    BEFORE INSERT OR UPDATE ON retention.tenant_setting
    FOR EACH ROW EXECUTE FUNCTION retention.tenant_setting_check();

-- remember_keep: policy retentions join keep_history too, so rows stamped
-- under an old policy are never forgotten by possible_keeps().
CREATE OR REPLACE FUNCTION retention.remember_keep()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    INSERT INTO retention.keep_history (dataset, keep)
        VALUES (to_jsonb(NEW) ->> TG_ARGV[0], NEW.keep)   -- TG_ARGV[0]: the column naming the dataset
        ON CONFLICT DO NOTHING;
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

-- partitions(dataset): the dataset's partitions with their bounds (NULL for
-- the default partition), oldest first.
CREATE OR REPLACE FUNCTION retention.partitions(p_dataset text)
RETURNS TABLE (partition regclass, lower_bound timestamptz, upper_bound timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass, b[1]::timestamptz, b[2]::timestamptz
      FROM retention.dataset d
      JOIN pg_inherits i ON i.inhparent = d.relation::regclass
      JOIN pg_class c ON c.oid = i.inhrelid
      LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     'FROM \(''([^'']+)''\) TO \(''([^'']+)''\)') AS b ON true
     WHERE d.name = p_dataset
     ORDER BY b[1]::timestamptz NULLS FIRST
$$;

-- period_start(dataset, t): the start of the partition period holding t (UTC).
CREATE OR REPLACE FUNCTION retention.period_start(p_granularity text, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT date_trunc(p_granularity, p_at, 'UTC')
$$;

-- create_partition(dataset, lower): creates the partition of the period
-- starting at `lower`, unless it exists. Rows of that period that sit in the
-- default partition (inserted before the partition existed) are moved into
-- it first, so PostgreSQL accepts the new partition.
CREATE OR REPLACE FUNCTION retention.create_partition(p_dataset text, p_lower timestamptz)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d        retention.dataset;
    v_upper  timestamptz;
    v_parent regclass;
    v_schema text;
    v_name   text;
    v_default regclass;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_parent := d.relation::regclass;
    v_upper := (((p_lower AT TIME ZONE 'UTC') + ('1 ' || d.granularity)::interval) AT TIME ZONE 'UTC');
    IF EXISTS (SELECT 1 FROM retention.partitions(p_dataset) p
                WHERE p.lower_bound < v_upper AND p.upper_bound > p_lower) THEN
        RETURN false;   -- already there (or overlapping one made at another granularity)
    END IF;
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = v_parent;
    v_name := v_name || '_p' || to_char(p_lower AT TIME ZONE 'UTC', 'YYYYMMDD');
    SELECT p.partition INTO v_default FROM retention.partitions(p_dataset) p WHERE p.lower_bound IS NULL;
    IF v_default IS NOT NULL AND EXISTS (
        SELECT 1 FROM retention.default_rows_in(v_default, d.time_column, p_lower, v_upper)) THEN
        EXECUTE format('CREATE TABLE %I.%I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                       v_schema, v_name, v_parent);
        EXECUTE format('WITH moved AS (DELETE FROM %s t WHERE t.%I >= $1 AND t.%I < $2 RETURNING t.*)
                        INSERT INTO %I.%I SELECT * FROM moved',
                       v_default, d.time_column, d.time_column, v_schema, v_name)
            USING p_lower, v_upper;
        EXECUTE format('ALTER TABLE %s ATTACH PARTITION %I.%I FOR VALUES FROM (%L) TO (%L)',
                       v_parent, v_schema, v_name, p_lower, v_upper);
    ELSE
        EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       v_schema, v_name, v_parent, p_lower, v_upper);
    END IF;
    RETURN true;
END
$$;

-- default_rows_in(default partition, time column, from, to): one row if the
-- default partition holds a row in [from, to).
CREATE OR REPLACE FUNCTION retention.default_rows_in(p_default regclass, p_column text, p_from timestamptz, p_to timestamptz)
RETURNS SETOF integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE format('SELECT 1 FROM %s t WHERE t.%I >= $1 AND t.%I < $2 LIMIT 1',
                                p_default, p_column, p_column)
        USING p_from, p_to;
END
$$;

-- premake(dataset, at): makes sure partitions exist from the period holding
-- `at` through `premake` periods ahead, so inserts never land in the default
-- partition in normal operation. Returns how many it created.
CREATE OR REPLACE FUNCTION retention.premake(p_dataset text, p_at timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d        retention.dataset;
    v_start  timestamptz;
    v_lower  timestamptz;
    v_have   timestamptz[];
    v_made   integer := 0;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_start := retention.period_start(d.granularity, p_at);
    -- The partitions that exist, read once: the daily run usually finds
    -- every period already there and creates nothing.
    SELECT array_agg(p.lower_bound) INTO v_have
      FROM retention.partitions(p_dataset) p WHERE p.lower_bound >= v_start;
    FOR i IN 0 .. d.premake LOOP
        v_lower := ((v_start AT TIME ZONE 'UTC') + (i || ' ' || d.granularity)::interval) AT TIME ZONE 'UTC';
        CONTINUE WHEN v_lower = ANY (coalesce(v_have, '{}'));
        IF retention.create_partition(p_dataset, v_lower) THEN
            v_made := v_made + 1;
        END IF;
    END LOOP;
    IF d.archive_relation IS NOT NULL THEN
        PERFORM retention.premake_archive(p_dataset, p_at);
    END IF;
    RETURN v_made;
END
$$;

-- premake_archive(dataset, at): the archive table is partitioned by month of
-- the archived rows' deadline; makes this month's and next month's.
-- Older deadlines (a backlog archived late) go to its default partition.
CREATE OR REPLACE FUNCTION retention.premake_archive(p_dataset text, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d        retention.dataset;
    v_lower  timestamptz;
    v_upper  timestamptz;
    v_schema text;
    v_name   text;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    SELECT n.nspname, c.relname INTO v_schema, v_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = d.archive_relation::regclass;
    FOR i IN 0 .. 1 LOOP
        v_lower := ((date_trunc('month', p_at, 'UTC') AT TIME ZONE 'UTC') + (i || ' month')::interval) AT TIME ZONE 'UTC';
        v_upper := ((v_lower AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC';
        IF NOT EXISTS (
            SELECT 1 FROM pg_inherits inh JOIN pg_class c ON c.oid = inh.inhrelid
             WHERE inh.inhparent = d.archive_relation::regclass
               AND c.relname = v_name || '_p' || to_char(v_lower AT TIME ZONE 'UTC', 'YYYYMM')) THEN
            BEGIN
                EXECUTE format('CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                               v_schema, v_name || '_p' || to_char(v_lower AT TIME ZONE 'UTC', 'YYYYMM'),
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
AS $$
    SELECT CASE WHEN p_column IS NULL THEN 'NULL::text' ELSE format('%s.%I::text', p_alias, p_column) END
$$;

-- expired_predicate(dataset): the exact condition, as SQL over a row `t`
-- and the run's start `$1`, under which enforcement removes a row:
--   deadline (time + retention, in UTC) before T, and no active hold.
CREATE OR REPLACE FUNCTION retention.expired_predicate(p_dataset text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('((t.%I AT TIME ZONE ''UTC'') + %s) < ($1 AT TIME ZONE ''UTC'') AND NOT retention.is_held(%L, %s, %s, $1)',
                  d.time_column,
                  CASE WHEN d.new_rows THEN 't.retention_keep'
                       ELSE format('retention.keep_for(%L, %s, %s)', d.name, v.tenant, v.environment) END,
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
    SELECT format('retention.is_held(%L, %s, %s, $1)', d.name,
                  retention.column_as_text('t', d.tenant_column),
                  retention.column_as_text('t', d.environment_column))
      FROM retention.dataset d WHERE d.name = p_dataset
$$;

-- run_held(dataset, T): the legal holds active at T, written out as SQL
-- over a row `t` (NULL when none is active), e.g.
--   (t."bot_id"::text = 'bot-7' AND true)
-- Same rule as is_held(), without a function call per row.
CREATE OR REPLACE FUNCTION retention.run_held(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT string_agg(format('(%s AND %s)',
                             CASE WHEN h.tenant IS NULL THEN 'true'
                                  ELSE format('%s = %L', retention.column_as_text('t', d.tenant_column), h.tenant) END,
                             CASE WHEN h.environment IS NULL THEN 'true'
                                  ELSE format('%s = %L', retention.column_as_text('t', d.environment_column), h.environment) END),
                      ' OR ' ORDER BY h.tenant, h.environment, h.reason)
      FROM retention.hold h JOIN retention.dataset d ON d.name = h.dataset
     WHERE h.dataset = p_dataset
       AND (h.until IS NULL OR (p_at AT TIME ZONE 'UTC') < (h.until + 1)::timestamp)
$$;

-- run_predicate(dataset, T): the condition a run starting at T uses to
-- remove rows, over a row `t` and `$1` = T. It selects exactly the rows of
-- expired_predicate(), written out for speed with T and the policy as they
-- are when the run starts:
--   * a cheap filter first: `time < cutoff`, where cutoff = the latest
--     T - retention (+ calendar slack) over every retention a row can have;
--     a row at or after it cannot be expired, so the rest is skipped;
--   * tenants with a rule of their own (a policy override or a run-time
--     setting) get the full keep_for() lookup; every other row's retention
--     is its environment's override or the dataset's keep, a CASE;
--   * the holds active at T, written out (run_held).
CREATE OR REPLACE FUNCTION retention.run_predicate(p_dataset text, p_at timestamptz)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d         retention.dataset;
    v_tenant  text;
    v_env     text;
    v_keep    text;
    v_special text[];
    v_cutoff  timestamptz;
    v_held    text := retention.run_held(p_dataset, p_at);
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    v_tenant := retention.column_as_text('t', d.tenant_column);
    v_env := retention.column_as_text('t', d.environment_column);
    SELECT max(((p_at AT TIME ZONE 'UTC') - k + retention.calendar_slack(k)) AT TIME ZONE 'UTC')
      INTO v_cutoff FROM retention.possible_keeps(p_dataset) AS k;
    IF d.new_rows THEN
        v_keep := 't.retention_keep';
    ELSE
        SELECT 'CASE' || string_agg(format(' WHEN %s = %L THEN %L::interval', v_env, o.environment, o.keep),
                                    '' ORDER BY o.environment)
               || format(' ELSE %L::interval END', d.keep)
          INTO v_keep
          FROM retention.policy_override o
         WHERE o.dataset = p_dataset AND o.tenant IS NULL;
        v_keep := coalesce(v_keep, format('%L::interval', d.keep));   -- no environment override
        SELECT array_agg(x.tenant ORDER BY x.tenant) INTO v_special
          FROM (SELECT o.tenant FROM retention.policy_override o WHERE o.dataset = p_dataset AND o.tenant IS NOT NULL
                UNION SELECT s.tenant FROM retention.tenant_setting s WHERE s.dataset = p_dataset) x;
        IF v_special IS NOT NULL THEN
            v_keep := format('CASE WHEN %s = ANY (%L::text[]) THEN retention.keep_for(%L, %s, %s) ELSE %s END',
                             v_tenant, v_special, d.name, v_tenant, v_env, v_keep);
        END IF;
    END IF;
    RETURN format('t.%I < %L::timestamptz AND ((t.%I AT TIME ZONE ''UTC'') + %s) < ($1 AT TIME ZONE ''UTC'')',
                  d.time_column, v_cutoff, d.time_column, v_keep)
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

-- remove_rows(dataset, relation, T, where): removes the rows of one
-- partition (or the default partition) matching `where`, a batch of
-- `batch_pages` pages per transaction step, and returns (deleted, archived).
-- With an archive, every removed row is first copied into it, with its
-- deadline, in the same statement. Called by enforce() between COMMITs.
CREATE OR REPLACE FUNCTION retention.remove_batch(p_dataset text, p_relation regclass, p_t timestamptz,
                                                  p_from_page bigint, p_pages bigint, p_pred text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d      retention.dataset;
    v_n    bigint;
    v_pred text := coalesce(p_pred, retention.run_predicate(p_dataset, p_t));
    v_keep text;
BEGIN
    SELECT * INTO STRICT d FROM retention.dataset WHERE name = p_dataset;
    IF d.archive_relation IS NULL THEN
        EXECUTE format('DELETE FROM %s t WHERE t.ctid >= $2 AND t.ctid < $3 AND %s', p_relation, v_pred)
            USING p_t, format('(%s,0)', p_from_page)::tid, format('(%s,0)', p_from_page + p_pages)::tid;
    ELSE
        v_keep := CASE WHEN d.new_rows THEN 'moved.retention_keep'
                       ELSE format('retention.keep_for(%L, %s, %s)', d.name,
                                   retention.column_as_text('moved', d.tenant_column),
                                   retention.column_as_text('moved', d.environment_column)) END;
        EXECUTE format('WITH moved AS (DELETE FROM %s t WHERE t.ctid >= $2 AND t.ctid < $3 AND %s RETURNING t.*)
                        INSERT INTO %s (%s, archived_at, retention_deadline)
                        SELECT %s, $1, ((moved.%I AT TIME ZONE ''UTC'') + %s) AT TIME ZONE ''UTC'' FROM moved',
                       p_relation, v_pred, d.archive_relation, retention.columns_of(d.relation::regclass),
                       retention.columns_of(d.relation::regclass, 'moved.'), d.time_column, v_keep)
            USING p_t, format('(%s,0)', p_from_page)::tid, format('(%s,0)', p_from_page + p_pages)::tid;
    END IF;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END
$$;

-- pages_of(relation): the relation's size in pages.
CREATE OR REPLACE FUNCTION retention.pages_of(p_relation regclass)
RETURNS bigint
LANGUAGE sql STABLE
AS $$
    SELECT pg_catalog.pg_relation_size(p_relation) / pg_catalog.current_setting('block_size')::bigint
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
-- locks for long and a failed step never undoes the ones before it):
--   1. premake: future partitions (a failure here is logged, not fatal;
--      like every lock the run takes, waits at most lock_timeout);
--   2. whole partitions: a partition whose upper bound plus the longest
--      possible retention (plus calendar slack) is at or before T holds
--      only expired rows; unless it holds a held row, it is dropped
--      (archived first with on_expiry: archive). Waits at most
--      lock_timeout for its lock, else skips it and logs the skip;
--   3. row by row: every other partition that can hold an expired row
--      (the boundary partitions, the default partition, shorter tenant
--      retentions) is scanned batch_pages pages at a time and its expired
--      rows deleted (or moved to the archive);
--   4. archive: archived rows whose deadline plus archive_keep is before T
--      are deleted, unless held.
-- Locks: an advisory lock per dataset, so two runs never overlap (the
-- second says so and returns); ACCESS EXCLUSIVE on the table, its default
-- partition and a partition only while dropping it (and on the table while
-- premake creates a partition), each wait at most lock_timeout; after one
-- timeout on the table itself, the run tries no further drops.
-- Must be CALLed outside a transaction block (as pg_cron does).
CREATE OR REPLACE PROCEDURE retention.enforce(p_dataset text, p_now timestamptz DEFAULT NULL)
LANGUAGE plpgsql
AS $$
DECLARE
    d          retention.dataset;
    v_t        timestamptz := coalesce(p_now, pg_catalog.now());
    v_log      bigint;
    v_part     record;
    v_keeps    interval[];
    v_whole    boolean;
    v_rows     bigint;
    v_page     bigint;
    v_n        bigint;
    v_deleted  bigint := 0;
    v_archived bigint := 0;
    v_arch_del bigint := 0;
    v_in_drop  bigint := 0;
    v_dropped  text[] := '{}';
    v_skipped  text[] := '{}';
    v_err      text;
    v_state    text;
    v_where    text;
    v_held     boolean;
    v_name     text;
    v_default  regclass;
    v_busy     boolean := false;   -- the table itself stayed locked past lock_timeout
    v_pred     text;               -- run_predicate(): exactly the rows this run removes
    v_heldx    text;               -- run_held(): the holds active at T, as SQL (NULL: none)
    v_can      boolean;
BEGIN
    SELECT * INTO d FROM retention.dataset WHERE name = p_dataset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgretain: unknown dataset "%"', p_dataset
            USING HINT = 'the datasets are listed in retention.dataset';
    END IF;
    IF NOT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pgretain'), pg_catalog.hashtext(p_dataset)) THEN
        RAISE NOTICE 'pgretain: enforcement of "%" is already running; this run does nothing', p_dataset;
        INSERT INTO retention.run_log (dataset, action, reference_time, finished_at, outcome, detail)
            VALUES (p_dataset, 'enforce', v_t, pg_catalog.clock_timestamp(), 'skipped', 'another run was in progress');
        RETURN;
    END IF;
    INSERT INTO retention.run_log (dataset, action, reference_time)
        VALUES (p_dataset, 'enforce', v_t) RETURNING id INTO v_log;
    -- A run of this dataset still logged as 'running' is dead: every run
    -- holds the lock we now hold until it has logged its outcome, and the
    -- lock is session-level, so it ended with that run's connection. It was
    -- killed (pg_terminate_backend, a crash, a restart, a statement_timeout)
    -- before logging how it ended: say so, or the evidence would show it in
    -- progress forever. Its work up to its last COMMIT stays done.
    UPDATE retention.run_log
       SET outcome = 'failed',
           detail = pg_catalog.concat_ws('; ', detail, pg_catalog.format(
               'ended without logging its outcome (its connection was terminated or the server stopped); found by run %s', v_log))
     WHERE dataset = p_dataset AND action = 'enforce' AND outcome = 'running' AND id <> v_log;
    COMMIT;

    -- Every lock the run takes from here on waits at most lock_timeout.
    -- Premake included: creating a partition takes ACCESS EXCLUSIVE on the
    -- parent, so without a timeout a long transaction reading the table
    -- would stall the run, and every insert queued behind it, indefinitely.
    PERFORM pg_catalog.set_config('lock_timeout', d.lock_timeout, false);

    -- 1. Future partitions, in their own transaction.
    BEGIN
        PERFORM retention.premake(p_dataset, greatest(v_t, pg_catalog.now()));
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
        UPDATE retention.run_log SET detail = 'premake failed: ' || v_err WHERE id = v_log;
        -- A lock timeout here means a long transaction holds the table (its
        -- parent or default partition); every drop needs the same locks.
        v_busy := v_state = '55P03';
        v_err := NULL;
        v_state := NULL;
    END;
    COMMIT;

    SELECT pg_catalog.array_agg(k) INTO v_keeps FROM retention.possible_keeps(p_dataset) AS k;
    SELECT p.partition INTO v_default FROM retention.partitions(p_dataset) p WHERE p.lower_bound IS NULL;
    -- The exact condition for this run, and the holds active at T, written out once.
    v_pred := retention.run_predicate(p_dataset, v_t);
    v_heldx := retention.run_held(p_dataset, v_t);

    FOR v_part IN SELECT * FROM retention.partitions(p_dataset) LOOP
        -- 2. The whole partition, when every row in it is past its deadline.
        v_whole := v_part.upper_bound IS NOT NULL AND (
            SELECT pg_catalog.bool_and((v_part.upper_bound AT TIME ZONE 'UTC') + k + retention.calendar_slack(k)
                                       <= (v_t AT TIME ZONE 'UTC'))
              FROM pg_catalog.unnest(v_keeps) AS k);
        -- 3. ... or, else, whether it can hold an expired row at all.
        v_can := v_whole OR v_part.lower_bound IS NULL OR NOT (
            SELECT pg_catalog.bool_and((v_part.lower_bound AT TIME ZONE 'UTC') + k - retention.calendar_slack(k)
                                       >= (v_t AT TIME ZONE 'UTC'))
              FROM pg_catalog.unnest(v_keeps) AS k);
        CONTINUE WHEN NOT v_can;   -- nothing to do here: no transaction spent on it
        BEGIN
            IF v_whole AND v_heldx IS NOT NULL THEN
                EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM %s t WHERE %s)', v_part.partition, v_heldx)
                    INTO v_held;
                v_whole := NOT v_held;
            END IF;
            IF v_whole THEN
                IF v_busy THEN   -- see the LOCK TABLE below
                    RAISE lock_not_available USING MESSAGE = 'the table is locked by another transaction';
                END IF;
                SELECT greatest(c.reltuples, 0)::bigint INTO v_rows
                  FROM pg_catalog.pg_class c WHERE c.oid = v_part.partition;
                IF d.archive_relation IS NOT NULL THEN
                    v_archived := v_archived + retention.remove_batch(p_dataset, v_part.partition, v_t, 0,
                                                                      retention.pages_of(v_part.partition) + 1, v_pred);
                END IF;
                -- Its name, taken before the drop: a dropped regclass prints as a bare OID.
                v_name := v_part.partition::text;
                -- DROP locks the parent, the partition and the default partition
                -- (ACCESS EXCLUSIVE), and inserts queue behind each wait. Lock
                -- the table's two first: if they stay busy past lock_timeout
                -- (a long transaction reads the table: a report, pg_dump), every
                -- other drop would wait as long again, stalling inserts each
                -- time, so the rest are skipped at once for the next run. Then
                -- DROP waits at most lock_timeout for this partition only.
                BEGIN
                    EXECUTE pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', d.relation);
                    IF v_default IS NOT NULL THEN
                        EXECUTE pg_catalog.format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', v_default);
                    END IF;
                EXCEPTION WHEN lock_not_available THEN
                    v_busy := true;
                    RAISE;
                END;
                EXECUTE pg_catalog.format('DROP TABLE %s', v_part.partition);
                v_dropped := v_dropped || v_name;
                v_in_drop := v_in_drop + v_rows;
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            v_skipped := v_skipped || v_part.partition::text;
            v_whole := true;   -- skip row-level work too; the next run retries
        WHEN OTHERS THEN
            GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
        END;
        COMMIT;
        EXIT WHEN v_err IS NOT NULL;
        CONTINUE WHEN v_whole;

        -- 3. Row by row (the partition can hold an expired row: see v_can).
        v_page := 0;
        WHILE v_page <= retention.pages_of(v_part.partition) LOOP
            BEGIN
                v_n := retention.remove_batch(p_dataset, v_part.partition, v_t, v_page, d.batch_pages, v_pred);
                IF d.archive_relation IS NULL THEN
                    v_deleted := v_deleted + v_n;
                ELSE
                    v_archived := v_archived + v_n;
                END IF;
            EXCEPTION WHEN lock_not_available THEN
                v_skipped := v_skipped || (v_part.partition::text || ' (rows)');
                EXIT;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
                EXIT;
            END;
            COMMIT;
            v_page := v_page + d.batch_pages;
        END LOOP;
        EXIT WHEN v_err IS NOT NULL;
    END LOOP;

    -- 4. The archive: rows whose deadline plus archive_keep has passed.
    IF v_err IS NULL AND d.archive_relation IS NOT NULL THEN
        v_where := pg_catalog.format(
            '(t.retention_deadline AT TIME ZONE ''UTC'') + %L::interval < ($1 AT TIME ZONE ''UTC'')%s',
            d.archive_keep,
            CASE WHEN v_heldx IS NULL THEN '' ELSE pg_catalog.format(' AND NOT coalesce(%s, false)', v_heldx) END);
        FOR v_part IN
            SELECT c.oid::regclass AS partition FROM pg_catalog.pg_inherits i
              JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = d.archive_relation::regclass ORDER BY c.relname
        LOOP
            BEGIN
                EXECUTE pg_catalog.format('DELETE FROM %s t WHERE %s', v_part.partition, v_where) USING v_t;
                GET DIAGNOSTICS v_n = ROW_COUNT;
                v_arch_del := v_arch_del + v_n;
            EXCEPTION WHEN lock_not_available THEN
                v_skipped := v_skipped || v_part.partition::text;
            WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_err = MESSAGE_TEXT, v_state = RETURNED_SQLSTATE;
                EXIT;
            END;
            COMMIT;
        END LOOP;
    END IF;

    PERFORM pg_catalog.set_config('lock_timeout', '0', false);
    UPDATE retention.run_log
       SET finished_at = pg_catalog.clock_timestamp(),
           outcome = CASE WHEN v_err IS NOT NULL THEN 'failed'
                          WHEN pg_catalog.cardinality(v_skipped) > 0 THEN 'partial' ELSE 'ok' END,
           partitions_dropped = v_dropped, partitions_skipped = v_skipped,
           rows_deleted = v_deleted, rows_in_dropped = v_in_drop, rows_archived = v_archived,
           archive_rows_deleted = v_arch_del,
           detail = NULLIF(pg_catalog.concat_ws('; ', detail, v_err), '')   -- NULL, not '', when all went well
     WHERE id = v_log;
    COMMIT;
    PERFORM pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('pgretain'), pg_catalog.hashtext(p_dataset));
    IF v_err IS NOT NULL THEN
        RAISE EXCEPTION 'pgretain: enforcement of "%" failed: %', p_dataset, v_err
            USING ERRCODE = v_state,
                  HINT = pg_catalog.format('what was done before the failure is kept and logged in retention.run_log (id %s); the next run continues', v_log);
    END IF;
END
$$;

-- erase(dataset, key): on-demand erasure ("delete the session at any
-- point"): removes every row of the dataset whose erase_by column equals
-- key, in the table and its archive, except rows under an active hold,
-- which a hold keeps. Logs the erasure. Returns what it did.
CREATE OR REPLACE FUNCTION retention.erase(p_dataset text, p_key text)
RETURNS TABLE (rows_deleted bigint, archive_rows_deleted bigint, rows_kept_by_hold bigint, holds text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d      retention.dataset;
    v_now  timestamptz := now();
    v_held text;
BEGIN
    SELECT * INTO d FROM retention.dataset WHERE name = p_dataset;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgretain: unknown dataset "%"', p_dataset USING ERRCODE = 'undefined_object';
    END IF;
    IF d.erase_column IS NULL THEN
        RAISE EXCEPTION 'pgretain: dataset "%" has no erase_by column', p_dataset
            USING ERRCODE = 'feature_not_supported', HINT = 'add erase_by to the dataset in the policy';
    END IF;
    v_held := retention.held_predicate(p_dataset);
    EXECUTE format('DELETE FROM %s t WHERE t.%I::text = $2 AND NOT %s', d.relation, d.erase_column, v_held)
        USING v_now, p_key;
    GET DIAGNOSTICS rows_deleted = ROW_COUNT;
    archive_rows_deleted := 0;
    IF d.archive_relation IS NOT NULL THEN
        EXECUTE format('DELETE FROM %s t WHERE t.%I::text = $2 AND NOT %s', d.archive_relation, d.erase_column, v_held)
            USING v_now, p_key;
        GET DIAGNOSTICS archive_rows_deleted = ROW_COUNT;
    END IF;
    EXECUTE format('SELECT count(*) FROM %s t WHERE t.%I::text = $2 AND %s', d.relation, d.erase_column, v_held)
        INTO rows_kept_by_hold USING v_now, p_key;
    IF d.archive_relation IS NOT NULL THEN
        EXECUTE format('SELECT $3 + count(*) FROM %s t WHERE t.%I::text = $2 AND %s', d.archive_relation, d.erase_column, v_held)
            INTO rows_kept_by_hold USING v_now, p_key, rows_kept_by_hold;
    END IF;
    SELECT string_agg(DISTINCT h.reason, '; ' ORDER BY h.reason) INTO holds
      FROM retention.hold h
     WHERE rows_kept_by_hold > 0 AND h.dataset = p_dataset
       AND (h.until IS NULL OR (v_now AT TIME ZONE 'UTC') < (h.until + 1)::timestamp);
    INSERT INTO retention.run_log (dataset, action, reference_time, finished_at, outcome,
                                   rows_deleted, archive_rows_deleted, rows_kept_by_hold, detail)
        VALUES (p_dataset, 'erase', v_now, clock_timestamp(), 'ok', rows_deleted, archive_rows_deleted,
                rows_kept_by_hold, 'erase_by = ' || quote_literal(p_key)
                                   || CASE WHEN holds IS NOT NULL THEN '; kept by hold: ' || holds ELSE '' END);
    RETURN NEXT;
END
$$;
