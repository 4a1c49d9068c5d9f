-- Least-privilege roles of the PostgreSQL warehouse (issue 16). Not a migration: an operator runs it
-- as the database's admin user (a superuser, or a managed service's master user), once before the
-- platform first connects and again after every release, which also picks up any new dashboard
-- view. Idempotent: it creates what is missing and puts back what drifted.
--
--   pipeline role (default asin_pipeline)  what the platform connects as (ASIN_PLATFORM_WAREHOUSE_URL):
--       owns the schema's tables and views, so it runs the migrations and every write; no
--       superuser, no role or database creation.
--   reader role (default asin_reader)      what dashboards and BI tools connect as: SELECT on the
--       dashboard views and the exports-facing tables below, nothing else (no raw payloads, no mart
--       rows outside the views, no INSERT/UPDATE/DELETE/TRUNCATE, no DDL).
--
-- Parameters are session settings (so the same file runs from psql, psycopg or a migration tool):
--   psql "postgresql://postgres@warehouse-pg:5432/asin" -v ON_ERROR_STOP=1 \
--     -c "SET asin_platform.schema = 'public'" \
--     -c "SET asin_platform.pipeline_role = 'asin_pipeline'" \
--     -c "SET asin_platform.reader_role = 'asin_reader'" \
--     -f deploy/warehouse_roles.sql
-- Passwords are never in this file: set them afterwards with psql's \password (sent hashed, kept
-- out of the server log and the shell history). deploy/README.md has the whole procedure.
--
-- The schema must hold the warehouse alone: every table and view in it is handed to the pipeline
-- role (a warehouse first set up by the admin user is taken over that way).

DO $roles$
DECLARE
    target_schema text := coalesce(nullif(current_setting('asin_platform.schema', true), ''), 'public');
    pipeline text := coalesce(nullif(current_setting('asin_platform.pipeline_role', true), ''), 'asin_pipeline');
    reader text := coalesce(nullif(current_setting('asin_platform.reader_role', true), ''), 'asin_reader');
    -- What a dashboard may read. The views run with their owner's (the pipeline's) rights, so the
    -- reader needs no grant on the tables behind them. A view added by a later migration stays
    -- invisible to the reader until it is listed here: least privilege by default.
    reader_objects text[] := ARRAY[
        'vw_top_candidates_daily', 'vw_pred_rank_daily', 'vw_features_latest',
        'score_baseline_daily', 'predictions_rank_daily', 'model_evaluation'
    ];
    role_name text;
    object_name text;
    obj record;
BEGIN
    IF pipeline = reader THEN
        RAISE EXCEPTION 'asin_platform.pipeline_role and asin_platform.reader_role must differ (both %)', pipeline;
    END IF;

    FOREACH role_name IN ARRAY ARRAY[pipeline, reader] LOOP
        -- The attributes below are forced on both roles: naming the admin user here would strip it.
        IF role_name = current_user OR EXISTS (SELECT FROM pg_roles WHERE rolname = role_name AND rolsuper) THEN
            RAISE EXCEPTION 'warehouse_roles: % is a superuser or the user running this script; name a role of its own',
                role_name;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        END IF;
        -- re-asserted every time: a role widened by hand is narrowed back
        EXECUTE format(
            'ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', role_name
        );
    END LOOP;

    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', target_schema, pipeline);
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA %I TO %I', target_schema, pipeline);
    -- Warehouse.setup() runs CREATE SCHEMA IF NOT EXISTS, which PostgreSQL checks against the
    -- database's CREATE right even when the schema exists: without it every run fails at setup.
    EXECUTE format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), pipeline);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), reader);
    -- Nobody but the pipeline creates objects in the warehouse's schema.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', target_schema);
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM %I', target_schema, reader);

    -- The pipeline owns every table and view of the schema (indexes and owned sequences follow).
    FOR obj IN
        SELECT c.relname, c.relkind
        FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = target_schema AND c.relkind IN ('r', 'p', 'v', 'm')
          AND pg_get_userbyid(c.relowner) <> pipeline
    LOOP
        EXECUTE format(
            'ALTER %s %I.%I OWNER TO %I',
            CASE obj.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
            target_schema, obj.relname, pipeline
        );
    END LOOP;

    -- The reader: whatever it held before goes, then SELECT on the listed objects that exist.
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', target_schema, reader);
    EXECUTE format('REVOKE ALL ON ALL SEQUENCES IN SCHEMA %I FROM %I', target_schema, reader);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', target_schema, reader);
    FOREACH object_name IN ARRAY reader_objects LOOP
        IF to_regclass(format('%I.%I', target_schema, object_name)) IS NOT NULL THEN
            EXECUTE format('GRANT SELECT ON %I.%I TO %I', target_schema, object_name, reader);
        ELSE
            RAISE NOTICE 'warehouse_roles: %.% does not exist yet; run this script again after the first run',
                target_schema, object_name;
        END IF;
    END LOOP;
    -- Dashboards name the views unqualified, and a runaway dashboard query cannot hold the
    -- pipeline's locks for long.
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', reader, current_database(), target_schema);
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L', reader, current_database(), '5min');
END
$roles$;
