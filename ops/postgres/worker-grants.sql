-- The worker role's rights on the tables: exactly the columns its SQL reads and writes.
--
-- Derived from worker/db/repositories.py (what each handler in worker/service/handlers.py
-- runs) and the readiness check. Run it after every migration, as the owner (or a
-- superuser); the migration job does. Needs -v worker_role=NAME. A migration that makes the
-- worker touch a new column must change this file too.
\set ON_ERROR_STOP on
\set QUIET on
\if :{?worker_role}
\else
  \warn 'worker-grants.sql: set the worker role name with -v worker_role=NAME'
  SELECT missing_psql_variable_worker_role;
\endif

BEGIN;
-- Start from nothing: revoking a table's privileges also revokes its column privileges, so
-- whatever a default privilege or an earlier version of this file granted is gone.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"worker_role";

-- /readyz compares the schema's revision with the code's Alembic head (worker.db.migrations).
GRANT SELECT (version_num) ON alembic_version TO :"worker_role";

-- InboxRepository.record_new / seen: INSERT … SELECT … WHERE NOT EXISTS (a twin in
-- processed_events of a partition up to tomorrow's, by processed_on, or the message id
-- already in messages) ON CONFLICT DO NOTHING RETURNING source, event_id; lock: advisory
-- locks need no grant.
GRANT SELECT (source, event_id, processed_on), INSERT (source, event_id, event_type)
    ON processed_events TO :"worker_role";
-- Existing daily partitions get what the owner's default privileges give new ones.
SELECT format('GRANT SELECT, INSERT ON %I.%I TO %I', n.nspname, c.relname, :'worker_role')
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.inhparent = 'public.processed_events'::regclass
\gexec

-- UserRepository.existing: SELECT id; add_usage: SELECT id … FOR NO KEY UPDATE (row locks
-- need an UPDATE grant), then UPDATE users SET tokens_used, cost_used from their current
-- values RETURNING the counters, the budget (tier, period, limits) and created_at (which tells a
-- user from an earlier one of the same id). Never email or password.
GRANT SELECT (id, tokens_used, cost_used, tier, budget_period, tokens_limit, cost_limit_usd, created_at),
      UPDATE (tokens_used, cost_used)
    ON users TO :"worker_role";

-- ConversationRepository.owners: SELECT id, user_id; grow: SELECT id … FOR NO KEY UPDATE,
-- then UPDATE SET total_tokens, title, updated_at from their current values; create:
-- INSERT … ON CONFLICT (id) DO NOTHING RETURNING id.
GRANT SELECT (id, user_id, title, total_tokens, cost_used, updated_at),
      INSERT (id, user_id, model, title, total_tokens, cost_used, created_at, updated_at),
      UPDATE (title, total_tokens, cost_used, updated_at)
    ON conversations TO :"worker_role";

-- MessageRepository.add_all: INSERT … ON CONFLICT (id) DO NOTHING RETURNING id; the inbox
-- looks messages up by id.
GRANT SELECT (id),
      INSERT (id, conversation_id, role, content, model, prompt_tokens, completion_tokens, metadata, created_at,
              cost_usd)
    ON messages TO :"worker_role";

-- UsageRecordRepository.add_all: a plain INSERT (id from gen_random_uuid()).
GRANT INSERT (id, event_source, event_id, user_id, conversation_id, message_id, api_key_id,
              model, prompt_tokens, completion_tokens, request_id, recorded_at, cost_usd)
    ON usage_records TO :"worker_role";

-- PriceRepository.for_models: the prices of the batch's models.
GRANT SELECT (model, valid_from, input_cost_per_token, output_cost_per_token) ON model_prices TO :"worker_role";

-- UsagePeriodRepository.grow: INSERT … ON CONFLICT DO UPDATE SET tokens, cost_usd from their
-- current values RETURNING the row.
GRANT SELECT (user_id, period, period_start, tokens, cost_usd),
      INSERT (user_id, period, period_start, tokens, cost_usd),
      UPDATE (tokens, cost_usd)
    ON usage_periods TO :"worker_role";

-- QuotaRepository.record: INSERT … ON CONFLICT (event_id) DO NOTHING RETURNING event_id.
GRANT SELECT (event_id),
      INSERT (event_id, user_id, period, period_start, limit_kind, limit_value, threshold, usage)
    ON quota_crossings TO :"worker_role";

-- OutboxRepository.add: INSERT … ON CONFLICT (event_id) DO NOTHING; the relay
-- (worker.db.outbox): claim (SELECT … FOR UPDATE SKIP LOCKED), mark sent, prune sent rows.
GRANT SELECT (seq, event_id, ordering_key, routing_key, payload, sent_at),
      INSERT (event_id, ordering_key, routing_key, payload),
      UPDATE (sent_at),
      DELETE
    ON outbox TO :"worker_role";

-- ApiKeyRepository.touch: UPDATE api_keys SET last_used_at WHERE id, user_id and an older
-- last_used_at.
GRANT SELECT (id, user_id, last_used_at), UPDATE (last_used_at) ON api_keys TO :"worker_role";
COMMIT;
