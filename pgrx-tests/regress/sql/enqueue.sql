SELECT regress.reset();

-- One job with the defaults, one with every option by name.
SELECT pdoflow.enqueue('send_email', '{"to": "a@example.com"}') IS NOT NULL AS enqueued;
SELECT pdoflow.enqueue(task => 'report', args => '{"day": "mon"}', queue => 'reports',
                       priority => 10, run_at => now() + interval '1 hour', max_attempts => 3) IS NOT NULL AS enqueued;
SELECT * FROM regress.jobs ORDER BY task;

-- Ids are time-ordered UUIDv7s.
SELECT count(*) AS jobs, bool_and(substr(id::text, 15, 1) = '7') AS all_version_7 FROM pdoflow.jobs;

-- A NULL run_at means now; a later run_at is kept.
SELECT task, run_at <= now() AS due_now FROM pdoflow.jobs ORDER BY task;

-- Bulk, one task: one job per args element, ids in input order.
SELECT regress.reset();
SELECT count(*) AS enqueued
FROM pdoflow.enqueue_many('resize', ARRAY['{"w": 1}', '{"w": 2}', '{"w": 3}']::jsonb[], queue => 'images', priority => 5);
CREATE TEMP TABLE tagged AS
SELECT * FROM pdoflow.enqueue_many('tag', ARRAY['{"n": "first"}', '{"n": "second"}']::jsonb[]) WITH ORDINALITY AS e(id, ord);
SELECT e.ord, j.args, j.queue, j.priority, e.id < lead(e.id) OVER (ORDER BY e.ord) AS ids_ascend
FROM tagged AS e JOIN pdoflow.jobs AS j ON j.id = e.id
ORDER BY e.ord;

-- Bulk, mixed: a JSON array of objects keyed like enqueue's parameters.
SELECT count(*) AS enqueued FROM pdoflow.enqueue_many('[
    {"task": "a"},
    {"task": "b", "args": {"x": 1.50}, "queue": "q2", "priority": -1, "max_attempts": 1},
    {"task": "c", "queue": null, "priority": null, "max_attempts": null, "run_at": "2999-01-01T00:00:00Z"}
]');
SELECT * FROM regress.jobs WHERE task IN ('a', 'b', 'c') ORDER BY task;

-- An empty bulk is fine and does nothing.
SELECT count(*) FROM pdoflow.enqueue_many('noop', '{}'::jsonb[]);
SELECT count(*) FROM pdoflow.enqueue_many('[]');

-- Args are kept exactly: no float rounding, no lost scale.
SELECT pdoflow.enqueue('exact', '{"big": 123456789012345678901234567890, "precise": 1.000000000000000000001, "scaled": 2.50}') IS NOT NULL;
SELECT args::text FROM pdoflow.jobs WHERE task = 'exact';
