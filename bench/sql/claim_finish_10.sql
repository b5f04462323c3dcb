SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(attempt), '{}') AS attempts FROM pdoflow.claim(10, worker => 'bench-' || :client_id) \gset
SELECT count(*) FROM pdoflow.finish_many(':ids'::uuid[], ':attempts'::int[]);
