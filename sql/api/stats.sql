-- Cumulative counters per queue, as the pg_stat_* views keep theirs:
-- enqueued, claimed, succeeded, failed, retried, cancelled and expired
-- leases since the server started or the counters were reset. Kept in
-- shared memory by Rust (pdoflow-ext/src/stats/); the functions that change
-- jobs report what they did through pdoflow._count_jobs and
-- pdoflow._count_ended, and a transaction's counts are added when it
-- commits. Empty without pdoflow in shared_preload_libraries.
CREATE VIEW pdoflow.stats AS
SELECT s.queue, s.enqueued, s.claimed, s.succeeded, s.failed, s.retried, s.cancelled,
       s.leases_expired, s.stats_reset
FROM pdoflow._stats() AS s;

COMMENT ON VIEW pdoflow.stats IS
    'Jobs enqueued, claimed, succeeded, failed, retried, cancelled and leases expired per queue since the server started or pdoflow.stats_reset; queue NULL: queues the counters had no room for.';

-- Zeroes the counters of one queue (its stats_reset becomes now), or, with
-- queue NULL, forgets every queue's counters in this database. Like
-- pg_stat_reset, it takes effect at once, whether the transaction commits
-- or not.
CREATE FUNCTION pdoflow.stats_reset(queue text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pdoflow, pg_temp
AS $$
BEGIN
    IF stats_reset.queue IS NOT NULL THEN
        PERFORM pdoflow._check_queue_name(stats_reset.queue);
    END IF;
    PERFORM pdoflow._reset_stats(stats_reset.queue);
END
$$;

COMMENT ON FUNCTION pdoflow.stats_reset(text) IS
    'Zeroes the pdoflow.stats counters of queue, or of every queue of this database when queue is NULL.';
