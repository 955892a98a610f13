-- Database roles of the persistence worker: an owner and a least-privilege worker.
--
--   owner   owns every table; runs `worker migrate`, `worker inbox maintain` (creates and
--           drops the inbox's daily partitions) and admin tools such as `worker users create`.
--   worker  the consuming pods: reads and writes exactly the columns the worker's SQL
--           touches (worker-grants.sql), never DELETE, TRUNCATE, ALTER or DROP.
--   api     optional (-v api_role=NAME): the HTTP API's pods (`worker api`), with exactly the
--           columns the API uses (api-grants.sql); never the inbox, never a password hash.
--
-- Run as a superuser (or a role with CREATEROLE that may grant on this database and its
-- `public` schema), connected to the worker's database:
--
--   psql -X -v owner_role=aiworker_owner -v owner_password=... \
--           -v worker_role=aiworker_worker -v worker_password=... \
--           -f ops/postgres/roles.sql "postgresql://admin@db.example/aiworker"
--
-- (ops/postgres/apply-roles.sh passes the passwords without putting them on a command line.)
-- Passwords are optional: leave them out to keep the current ones (or for certificate/IAM
-- authentication). Idempotent: run it before the first migration; once the schema
-- exists it also applies worker-grants.sql, which the migration job re-applies as the owner.
\set ON_ERROR_STOP on
\set QUIET on

\if :{?owner_role}
\else
  \warn 'roles.sql: set the owner role name with -v owner_role=NAME'
  SELECT missing_psql_variable_owner_role;
\endif
\if :{?worker_role}
\else
  \warn 'roles.sql: set the worker role name with -v worker_role=NAME'
  SELECT missing_psql_variable_worker_role;
\endif

SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner_role') AS owner_missing,
       NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'worker_role') AS worker_missing,
       current_database() AS dbname
\gset

\if :owner_missing
CREATE ROLE :"owner_role";
\endif
\if :worker_missing
CREATE ROLE :"worker_role";
\endif
\if :{?api_role}
SELECT NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'api_role') AS api_missing \gset
\if :api_missing
CREATE ROLE :"api_role";
\endif
ALTER ROLE :"api_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
\if :{?api_password}
ALTER ROLE :"api_role" PASSWORD :'api_password';
\endif
SET client_min_messages = error;
REVOKE :"owner_role" FROM :"api_role";
RESET client_min_messages;
GRANT CONNECT ON DATABASE :"dbname" TO :"api_role";
GRANT USAGE ON SCHEMA public TO :"api_role";
\endif

-- Whatever the roles were before, they end up with exactly these attributes.
ALTER ROLE :"owner_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE :"worker_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT;
\if :{?owner_password}
ALTER ROLE :"owner_role" PASSWORD :'owner_password';
\endif
\if :{?worker_password}
ALTER ROLE :"worker_role" PASSWORD :'worker_password';
\endif
-- The worker must never act with the owner's rights (membership would allow SET ROLE).
SET client_min_messages = error;
REVOKE :"owner_role" FROM :"worker_role";
RESET client_min_messages;

GRANT CONNECT, TEMPORARY ON DATABASE :"dbname" TO :"owner_role";
GRANT CONNECT ON DATABASE :"dbname" TO :"worker_role";

-- PostgreSQL 15 already keeps PUBLIC from creating in `public`; older clusters do not.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO :"owner_role";
GRANT USAGE ON SCHEMA public TO :"worker_role";

-- The owner creates a daily partition of processed_events every day (`worker inbox
-- maintain`). Rows reach them through the parent, which checks only the parent's grants;
-- these defaults make the partitions usable directly too, so every partition has the same
-- rights whether it was made before or after worker-grants.sql last ran. They apply to
-- every table the owner creates here: worker-grants.sql, run right after each migration,
-- narrows a new regular table back to the columns the worker needs.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT SELECT, INSERT ON TABLES TO :"worker_role";

SELECT to_regclass('public.alembic_version') IS NOT NULL AS schema_migrated \gset
\if :schema_migrated
\ir worker-grants.sql
\if :{?api_role}
\ir api-grants.sql
\endif
\else
\echo 'roles.sql: no schema yet; run `worker migrate` as the owner, then worker-grants.sql (the migration job does both)'
\endif
