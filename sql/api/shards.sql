-- Shards: a queue spread over several databases, each with pdoflow and its
-- own pdoflow.shard number (docs/scaling.md). Every id a shard makes carries
-- that number in its last byte (pdoflow-ext/src/api/ids.rs), so a proxy in
-- front, or anyone holding an id, knows where its job or posting lives.

-- The shard an id of pdoflow's was made in (0 to 255); meaningless for ids
-- made where pdoflow.shard is not set. IMMUTABLE: a proxy routes by it.
CREATE FUNCTION pdoflow.shard_of(id uuid)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
BEGIN ATOMIC
    SELECT pg_catalog.get_byte(pg_catalog.uuid_send(id), 15);
END;

COMMENT ON FUNCTION pdoflow.shard_of(uuid) IS
    'The shard (pdoflow.shard) a job or posting id was made in: the id''s last byte.';
