-- The API role's rights on the tables: exactly the columns the HTTP API (`worker api`) reads and writes.
--
-- Derived from worker/api/repository.py, worker/db/budgets.py (PATCH /users/{user_id}: the
-- user's row locked FOR UPDATE, its budget columns updated, the current period's usage row
-- upserted) and the routers' ORM inserts (users, conversations, API keys; their RETURNING of
-- server defaults needs SELECT on those columns). Never
-- `users.hashed_password` for reading, never DELETE, TRUNCATE or the inbox. Run it after every
-- migration, as the owner (or a superuser); the migration job does. Needs -v api_role=NAME.
\set ON_ERROR_STOP on
\set QUIET on
\if :{?api_role}
\else
  \warn 'api-grants.sql: set the API role name with -v api_role=NAME'
  SELECT missing_psql_variable_api_role;
\endif

BEGIN;
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"api_role";

GRANT SELECT (id, email, tier, tokens_used, tokens_limit, cost_used, cost_limit_usd, budget_period, created_at,
              updated_at),
      INSERT (id, email, hashed_password, tier, tokens_limit, cost_limit_usd, budget_period),
      UPDATE (tier, tokens_limit, cost_limit_usd, budget_period, updated_at)
    ON users TO :"api_role";

GRANT SELECT (id, user_id, title, model, settings, total_tokens, cost_used, created_at, updated_at),
      INSERT (id, user_id, title, model)
    ON conversations TO :"api_role";

GRANT SELECT (id, conversation_id, role, content, model, prompt_tokens, completion_tokens, cost_usd, created_at,
              content_search)
    ON messages TO :"api_role";

GRANT SELECT (user_id, model, prompt_tokens, completion_tokens, cost_usd, recorded_at) ON usage_records TO :"api_role";

GRANT SELECT (user_id, period, period_start, tokens, cost_usd),
      INSERT (user_id, period, period_start, tokens, cost_usd),
      UPDATE (tokens, cost_usd)
    ON usage_periods TO :"api_role";

GRANT SELECT (user_id, period, period_start, limit_kind, limit_value, threshold) ON quota_crossings TO :"api_role";

GRANT SELECT (id, user_id, key_hash, name, is_active, expires_at, last_used_at, created_at),
      INSERT (id, user_id, key_hash, name, expires_at, last_used_at),
      UPDATE (is_active)
    ON api_keys TO :"api_role";
COMMIT;
