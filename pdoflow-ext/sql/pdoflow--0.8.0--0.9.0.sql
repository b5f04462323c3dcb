-- pdoflow 0.8.0 -> 0.9.0 (ALTER EXTENSION pdoflow UPDATE TO '0.9.0').
--
-- Single-job enqueue (issue 16): pdoflow.enqueue no longer sets its
-- search_path for every call, which cost it 8% of its rate. It resolves no
-- name through the caller's search_path (sql/api/enqueue.sql says how);
-- _enqueue_general, which its general path calls, pins it instead.
\echo Use "ALTER EXTENSION pdoflow UPDATE" to load this file. \quit

ALTER FUNCTION pdoflow.enqueue(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text)
    RESET search_path;

-- Its general path (postings, parents, checked args) pins the search_path
-- for itself and the helpers it calls.
ALTER FUNCTION pdoflow._enqueue_general(text, jsonb, text, integer, timestamptz, integer, uuid, uuid[], text)
    SET search_path = pg_catalog, pdoflow, pg_temp;
