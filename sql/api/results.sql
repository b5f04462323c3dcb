-- Waiting for a job to end, inside the database: for clients that cannot
-- LISTEN (through PgBouncer in transaction mode, say), and for any language.
-- Written in Rust (pdoflow-ext/src/results/): the call sleeps on its
-- process's latch, which the transaction that ends the job sets when it
-- commits. It returns at once for a job that has ended, and otherwise when
-- it ends or timeout passes, with the job's state as it is then. A cancel
-- or statement_timeout ends the wait at once.
--
-- Like any statement, the call keeps its snapshot while it waits, holding
-- back vacuum's horizon for that long: prefer timeouts of seconds to
-- minutes, and call again. Without pdoflow in shared_preload_libraries it
-- looks every 50 ms instead.
CREATE FUNCTION pdoflow.await_result(id uuid, timeout interval DEFAULT '30 seconds')
RETURNS TABLE (state text, result jsonb, last_error text, finished_at timestamptz, progress jsonb)
LANGUAGE c VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS 'MODULE_PATHNAME', 'await_result_wrapper';

COMMENT ON FUNCTION pdoflow.await_result(uuid, interval) IS
    'Waits until job id has ended (succeeded, failed or cancelled), at most timeout; returns its state, result, last error, end time and progress.';

-- One session watching many jobs (a server holding many clients' waits):
-- returns the jobs among ids that have ended, at once if any has;
-- otherwise it sleeps until any job of this database ends, or timeout
-- passes, and returns those among ids that have ended by then, possibly
-- none. Call it again with the jobs still waited for: a job added to the
-- set while a call sleeps wakes that call when it ends. Unknown ids are
-- left out. Without pdoflow in shared_preload_libraries it looks every
-- 50 ms until one of ids has ended.
CREATE FUNCTION pdoflow.await_ended(ids uuid[], timeout interval DEFAULT '30 seconds')
RETURNS TABLE (id uuid, state text)
LANGUAGE c VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS 'MODULE_PATHNAME', 'await_ended_wrapper';

COMMENT ON FUNCTION pdoflow.await_ended(uuid[], interval) IS
    'Returns the jobs among ids that have ended; waits for the next end of any job in this database (at most timeout) when none has.';
