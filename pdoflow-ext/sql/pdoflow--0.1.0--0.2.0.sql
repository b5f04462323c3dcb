-- pdoflow 0.1.0 -> 0.2.0 (ALTER EXTENSION pdoflow UPDATE TO '0.2.0').
--
-- 0.2.0 is the first version reached by an upgrade script. From here on,
-- every change to
-- sql/ or to the Rust functions' SQL ships with the statements that bring a
-- database of the previous version to the new one, in a file named
-- pdoflow--<from>--<to>.sql in this folder. tests/tests/upgrade.rs compares
-- an upgraded database with a fresh install, object by object, and fails
-- when they differ.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

-- The functions with a pinned search_path also search the extension's own
-- schema (after pg_catalog, so built-ins still win; the caller's never).
ALTER FUNCTION pdoflow._delete_finished(integer) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow._expire_leases(integer) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow._notify_due_jobs() SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow._sweep_workers() SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.cancel(uuid) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.check_consistency() SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.claim(integer, text[], text, interval, text[]) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.claim_job(uuid, text, interval) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.create_posting(text, text, integer, text) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.delete_posting(uuid) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.enqueue_many(jsonb) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.enqueue_many(text, jsonb[], text, integer, timestamptz, integer, uuid, uuid[], text) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.finish(uuid, integer, text, jsonb) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.finish_many(uuid[], integer[], text[], jsonb[]) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.heartbeat(uuid, integer, interval) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.register_task(text, jsonb, text) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.register_worker(text) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.release(uuid, integer) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.retry(uuid) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.set_posting_status(uuid, text) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.submit_dag(jsonb, uuid) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.sweep(integer) SET search_path = pg_catalog, pdoflow, pg_temp;
ALTER FUNCTION pdoflow.unregister_task(text) SET search_path = pg_catalog, pdoflow, pg_temp;
