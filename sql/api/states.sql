-- The rules that pick a job's next state, each written once. Every path
-- that queues a job or ends a failed attempt asks here, as River names its
-- state changes. Plain SQL functions with no settings of their own, so the
-- planner inlines them into their callers' statements: a rule costs nothing
-- at run time for living in one place. Inlining needs each argument that a
-- rule reads twice to be a column or a constant, not a subquery (callers
-- take care), and a function no less volatile than what it calls.

-- The state of a job that waits to be claimed: 'queued', or 'paused' while
-- its posting is paused ('paused' keeps it out of the claim indexes until
-- the posting resumes). Asked by enqueue, DAG submission, a retry after a
-- failed attempt, release, a parent's end releasing its children, and
-- retry of a finished job.
CREATE FUNCTION pdoflow._waiting_state(posting_status text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN posting_status = 'paused' THEN 'paused' ELSE 'queued' END;
END;

-- Where a failed attempt leads: 'failed' once its attempts are used up,
-- 'cancelled' when its posting was cancelled (it is not retried), else it
-- waits for its next attempt (_waiting_state). Asked by finish_many for an
-- attempt that reported an error and by _expire_leases for one whose lease
-- ran out.
CREATE FUNCTION pdoflow._after_failed_attempt(attempt integer, max_attempts integer, posting_status text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN attempt >= max_attempts THEN 'failed'
                WHEN posting_status = 'cancelled' THEN 'cancelled'
                ELSE pdoflow._waiting_state(posting_status) END;
END;

-- The error a failed attempt leaves on its job: as reported, and for a job
-- not retried because its posting was cancelled, with that reason. (STABLE,
-- as format() is: an IMMUTABLE function around it would not be inlined.)
CREATE FUNCTION pdoflow._failed_attempt_error(error text, next_state text, posting uuid)
RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
BEGIN ATOMIC
    SELECT CASE WHEN next_state = 'cancelled'
                THEN format('%s (not retried: posting %s was cancelled)', error, posting)
                ELSE error END;
END;
