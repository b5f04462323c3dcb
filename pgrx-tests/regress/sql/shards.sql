-- pdoflow.shard: a shard's number, in the last byte of every id it makes.
SELECT regress.reset();
SHOW pdoflow.shard;
SET pdoflow.shard = 3;
SELECT pdoflow.shard_of(pdoflow.enqueue('sharded')) AS job_shard;
SELECT pdoflow.shard_of(pdoflow.create_posting('sharded posting')) AS posting_shard;
SELECT count(*) AS jobs, count(*) FILTER (WHERE pdoflow.shard_of(id) = 3) AS on_shard_3,
       array_agg(id ORDER BY ord) = array_agg(id ORDER BY id) AS ids_in_input_order
FROM pdoflow.enqueue_many('sharded', array_fill('{}'::jsonb, ARRAY[50])) WITH ORDINALITY AS e(id, ord);
SELECT count(*) AS dag_jobs, count(*) FILTER (WHERE pdoflow.shard_of(id) = 3) AS on_shard_3
FROM pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t"}, {"name": "b", "task": "t", "after": ["a"]}]}');
SET pdoflow.shard = 0;
SELECT pdoflow.shard_of(pdoflow.uuid_generate_v7()) AS shard_0;
SET pdoflow.shard = 255;
SELECT pdoflow.shard_of(pdoflow.uuid_generate_v7()) AS shard_255;
SELECT pdoflow.shard_of(NULL) IS NULL AS null_in_null_out;
-- Out of range, and not for every role to change.
SELECT regress.failure($$SET pdoflow.shard = 256$$);
SELECT regress.failure($$SET pdoflow.shard = -2$$);
RESET pdoflow.shard;
CREATE ROLE regress_shard_producer IN ROLE pdoflow_producer;
GRANT USAGE ON SCHEMA regress TO regress_shard_producer;
SET ROLE regress_shard_producer;
SELECT regress.failure($$SET pdoflow.shard = 1$$);
SELECT pdoflow.shard_of('01936f4e-0000-7000-8000-000000000007') AS producers_may_ask;
RESET ROLE;
REVOKE USAGE ON SCHEMA regress FROM regress_shard_producer;
DROP ROLE regress_shard_producer;
