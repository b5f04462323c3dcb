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
