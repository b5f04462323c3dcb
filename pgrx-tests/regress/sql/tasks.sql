-- Task registration: a JSON Schema for a task's args, checked at enqueue.
SELECT regress.reset();
TRUNCATE pdoflow.tasks;

SELECT pdoflow.register_task('send_email', '{"type": "object", "required": ["to"],
    "properties": {"to": {"type": "string", "format": "email"}, "retries": {"type": "integer", "minimum": 0}},
    "additionalProperties": false}', 'Sends one e-mail') AS new;
SELECT pdoflow.register_task('send_email', '{"type": "object", "required": ["to"],
    "properties": {"to": {"type": "string"}, "retries": {"type": "integer", "minimum": 0}}}', 'Sends one e-mail') AS new;
SELECT pdoflow.register_task('anything') AS new;
SELECT name, description, args_schema IS NOT NULL AS has_schema FROM pdoflow.tasks ORDER BY name;

-- Args that match go in; the others are refused with the failing path, in
-- every enqueue form, and nothing is written.
SELECT pdoflow.enqueue('send_email', '{"to": "ada@example.com"}') IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue('anything', '[1, 2, 3]') IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue('unregistered', '"free"') IS NOT NULL AS enqueued;
SELECT regress.failure(sql) AS error FROM (VALUES
    ($$SELECT pdoflow.enqueue('send_email', '{"retries": 1}')$$),
    ($$SELECT pdoflow.enqueue('send_email', '{"to": "a@b.c", "retries": -1}')$$),
    ($$SELECT pdoflow.enqueue_many('send_email', ARRAY['{"to": "a@b.c"}', '{"to": 5}']::jsonb[])$$),
    ($$SELECT pdoflow.enqueue_many('[{"task": "send_email", "args": {"to": "a@b.c"}}, {"task": "send_email"}]')$$),
    ($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "mail", "task": "send_email", "args": {"to": []}}]}')$$)
) AS t(sql);
SELECT task, count(*) FROM pdoflow.jobs GROUP BY 1 ORDER BY 1;

-- Required registration: unregistered tasks are refused.
SET pdoflow.require_registered_tasks = on;
SELECT regress.failure($$SELECT pdoflow.enqueue('unregistered')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "unregistered"}]')$$);
SELECT pdoflow.enqueue('anything') IS NOT NULL AS registered_ok;
RESET pdoflow.require_registered_tasks;

-- A changed schema applies at once; unregistering lifts it.
SELECT pdoflow.register_task('anything', '{"type": "array"}') AS new;
SELECT regress.failure($$SELECT pdoflow.enqueue('anything', '{}')$$);
SELECT pdoflow.unregister_task('anything'), pdoflow.unregister_task('anything') AS again;
SELECT pdoflow.enqueue('anything', '{}') IS NOT NULL AS enqueued;

-- Bad registrations.
SELECT regress.failure($$SELECT pdoflow.register_task(NULL)$$);
SELECT regress.failure($$SELECT pdoflow.register_task(' padded')$$);
SELECT regress.failure($$SELECT pdoflow.register_task('t', '{"type": 5}')$$);
SELECT regress.failure($$SELECT pdoflow.register_task('t', '{"minimum": "zero"}')$$);
TRUNCATE pdoflow.tasks;

-- replace => false: the same schema again is fine (jsonb equality: key
-- order does not count) and updates the description; another schema is
-- refused and changes nothing.
SELECT pdoflow.register_task('strict', '{"type": "object", "required": ["to"]}', replace => false) AS new;
SELECT pdoflow.register_task('strict', '{"required": ["to"], "type": "object"}', 'mails', replace => false) AS new;
SELECT args_schema, description FROM pdoflow.tasks WHERE name = 'strict';
SELECT regress.failure($$SELECT pdoflow.register_task('strict', '{"type": "array"}', replace => false)$$);
SELECT regress.failure($$SELECT pdoflow.register_task('strict', NULL, replace => false)$$);
SELECT regress.failure($$SELECT pdoflow.register_task('strict', NULL, replace => NULL)$$);
SELECT pdoflow.register_task('strict', '{"type": "array"}') AS new;
SELECT args_schema FROM pdoflow.tasks WHERE name = 'strict';

-- A mismatch says in its DETAIL where in the args it failed, as a JSON
-- pointer (a missing property: where it belongs).
SELECT pdoflow.register_task('pointed', '{"type": "object", "required": ["to"],
    "properties": {"to": {"type": "string"}, "cc": {"type": "array", "items": {"type": "string"}}}}');
CREATE FUNCTION regress.detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    detail text;
BEGIN
    EXECUTE sql;
    RETURN NULL;
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RETURN SQLSTATE || ': ' || detail;
END $$;
SELECT regress.detail($$SELECT pdoflow.enqueue('pointed', '{}')$$);
SELECT regress.detail($$SELECT pdoflow.enqueue('pointed', '{"to": "a", "cc": ["b", 7]}')$$);
SELECT regress.detail($$SELECT pdoflow.enqueue_many('[{"task": "pointed", "args": {"to": 1}}]')$$);
SELECT regress.detail($$SELECT pdoflow.enqueue('pointed', '[]')$$);
TRUNCATE pdoflow.tasks;
