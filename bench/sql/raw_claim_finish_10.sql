WITH claimed AS (
    UPDATE raw_jobs SET state = 'running'
    WHERE id IN (SELECT id FROM raw_jobs WHERE state = 'queued' ORDER BY priority DESC, id LIMIT 10 FOR UPDATE SKIP LOCKED)
    RETURNING id
) SELECT coalesce(array_agg(id), '{}') AS ids FROM claimed \gset
DELETE FROM raw_jobs WHERE id = ANY (':ids'::bigint[]);
