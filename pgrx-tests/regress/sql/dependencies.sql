-- Dependencies: jobs that wait for other jobs, and DAGs submitted whole.
SELECT regress.reset();

-- Jobs by task, as a test shows them.
CREATE VIEW regress.dag AS
SELECT task, node, state, dependency_mode, cardinality(depends_on) AS parents, last_error IS NOT NULL AS has_error
FROM pdoflow.jobs;

CREATE FUNCTION regress.id(task_name text) RETURNS uuid LANGUAGE sql AS $$
    SELECT id FROM pdoflow.jobs WHERE task = task_name
$$;

-- Claims the job of one task and finishes it (error NULL: success).
CREATE FUNCTION regress.work(task_name text, error text DEFAULT NULL, result jsonb DEFAULT NULL)
RETURNS text LANGUAGE sql AS $$
    SELECT pdoflow.finish(c.id, c.attempt, error, result)
    FROM pdoflow.claim_job(regress.id(task_name), 'regress') AS c
$$;

-- Mode all: the child waits for both parents, and gets their results.
SELECT pdoflow.enqueue('p1') IS NOT NULL, pdoflow.enqueue('p2') IS NOT NULL;
SELECT pdoflow.enqueue('child', depends_on => ARRAY[regress.id('p1'), regress.id('p2'), regress.id('p1')]) IS NOT NULL;
SELECT * FROM regress.dag ORDER BY task;
SELECT task FROM pdoflow.claim(10, tasks => ARRAY['child']);  -- blocked: never claimed
SELECT regress.work('p1', result => '{"rows": 10}');
SELECT task, state FROM regress.dag WHERE task = 'child';
SELECT regress.work('p2', result => '{"rows": 5}');
SELECT task, state FROM regress.dag WHERE task = 'child';
SELECT task, parent_results = jsonb_build_object(regress.id('p1')::text, '{"rows": 10}'::jsonb,
                                                 regress.id('p2')::text, '{"rows": 5}'::jsonb) AS results_of_both
FROM pdoflow.claim(1, tasks => ARRAY['child']);

-- A parent that fails for good cancels its mode-all children and their
-- descendants, naming the parent.
SELECT regress.reset();
SELECT pdoflow.enqueue('root', max_attempts => 1) IS NOT NULL;
SELECT pdoflow.enqueue('ok') IS NOT NULL;
SELECT pdoflow.enqueue('mid', depends_on => ARRAY[regress.id('root')]) IS NOT NULL;
SELECT pdoflow.enqueue('leaf', depends_on => ARRAY[regress.id('mid'), regress.id('ok')]) IS NOT NULL;
SELECT pdoflow.enqueue('either', depends_on => ARRAY[regress.id('root'), regress.id('ok')], dependency_mode => 'any') IS NOT NULL;
SELECT pdoflow.enqueue('only_root', depends_on => ARRAY[regress.id('root')], dependency_mode => 'any') IS NOT NULL;
SELECT regress.work('root', error => 'boom');
SELECT task, state, replace(replace(last_error, regress.id('root')::text, '<root>'), regress.id('mid')::text, '<mid>') AS last_error
FROM pdoflow.jobs ORDER BY task;
-- 'either' still has a parent that can succeed.
SELECT regress.work('ok');
SELECT task, state FROM pdoflow.jobs WHERE task = 'either';

-- Mode any: the first success releases the child, once; later ends change nothing.
SELECT regress.reset();
SELECT pdoflow.enqueue('a') IS NOT NULL, pdoflow.enqueue('b') IS NOT NULL;
SELECT pdoflow.enqueue('first', depends_on => ARRAY[regress.id('a'), regress.id('b')], dependency_mode => 'any') IS NOT NULL;
SELECT regress.work('b', result => '"from b"');
SELECT task, parent_results = jsonb_build_object(regress.id('b')::text, 'from b') AS result_of_b
FROM pdoflow.claim(1, tasks => ARRAY['first']);
SELECT regress.work('a', error => 'late failure');
SELECT task, state FROM pdoflow.jobs WHERE task = 'first';

-- Cancelling a parent cancels what needed it; retrying the parent, then the
-- child, brings both back: the child blocked again.
SELECT regress.reset();
SELECT pdoflow.enqueue('parent') IS NOT NULL;
SELECT pdoflow.enqueue('kid', depends_on => ARRAY[regress.id('parent')]) IS NOT NULL;
SELECT pdoflow.cancel(regress.id('parent'));
SELECT task, state FROM pdoflow.jobs ORDER BY task;
SELECT regress.failure($$SELECT pdoflow.retry(regress.id('kid'))$$);
SELECT pdoflow.retry(regress.id('parent')), pdoflow.retry(regress.id('kid'));
SELECT task, state FROM pdoflow.jobs ORDER BY task;
SELECT regress.work('parent');
SELECT task, state FROM pdoflow.jobs WHERE task = 'kid';
-- Cancelling a blocked job is allowed too.
SELECT pdoflow.enqueue('grandkid', depends_on => ARRAY[regress.id('kid')]) IS NOT NULL;
SELECT pdoflow.enqueue('waiting', depends_on => ARRAY[regress.id('grandkid')]) IS NOT NULL;
SELECT pdoflow.cancel(regress.id('grandkid'));
SELECT task, state FROM pdoflow.jobs WHERE task IN ('grandkid', 'waiting') ORDER BY task;

-- A mode-any child whose failed parent is retried counts it as pending again.
SELECT regress.reset();
SELECT pdoflow.enqueue('x', max_attempts => 1) IS NOT NULL, pdoflow.enqueue('y', max_attempts => 1) IS NOT NULL;
SELECT pdoflow.enqueue('any_of', depends_on => ARRAY[regress.id('x'), regress.id('y')], dependency_mode => 'any') IS NOT NULL;
SELECT regress.work('x', error => 'no');
SELECT pdoflow.retry(regress.id('x'));
SELECT regress.work('y', error => 'no');
SELECT task, state FROM pdoflow.jobs WHERE task = 'any_of';  -- x may still succeed
SELECT regress.work('x', error => 'no again');
SELECT task, state, last_error LIKE 'no parent can succeed any more%' AS why FROM pdoflow.jobs WHERE task = 'any_of';

-- Parents in another posting are fine; a paused posting's released child waits.
SELECT regress.reset();
SELECT pdoflow.create_posting('children') AS children \gset
SELECT pdoflow.enqueue('outside') IS NOT NULL;
SELECT pdoflow.enqueue('inside', posting => :'children', depends_on => ARRAY[regress.id('outside')]) IS NOT NULL;
SELECT pdoflow.set_posting_status(:'children', 'paused');
SELECT regress.work('outside');
SELECT task, state FROM pdoflow.jobs WHERE task = 'inside';
SELECT count(*) FROM pdoflow.claim(10);
SELECT pdoflow.set_posting_status(:'children', 'active');
SELECT task FROM pdoflow.claim(10);

-- Bad dependencies are refused, and nothing is written.
SELECT regress.reset();
SELECT pdoflow.enqueue('done') IS NOT NULL, pdoflow.enqueue('broken', max_attempts => 1) IS NOT NULL;
SELECT regress.work('broken', error => 'x');
SELECT regress.failure($$SELECT pdoflow.enqueue('t', depends_on => ARRAY['00000000-0000-7000-8000-000000000000'::uuid])$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', depends_on => ARRAY[regress.id('broken')])$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', depends_on => ARRAY[regress.id('broken')], dependency_mode => 'any')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', depends_on => ARRAY[regress.id('done'), NULL])$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', depends_on => ARRAY[regress.id('done')], dependency_mode => 'most')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue('t', dependency_mode => NULL)$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "depends_on": "x"}]')$$);
SELECT regress.failure($$SELECT pdoflow.enqueue_many('[{"task": "t", "dependency_mode": "both"}]')$$);
SELECT count(*) AS jobs FROM pdoflow.jobs;
-- An empty depends_on is no dependency.
SELECT pdoflow.enqueue('free', depends_on => '{}') AS free \gset
SELECT state, depends_on, dependency_mode FROM pdoflow.jobs WHERE id = :'free';

-- A DAG in one call: fan-out, a sub-DAG, fan-in; ids by name, parents first.
SELECT regress.reset();
SELECT name FROM pdoflow.submit_dag($${"nodes": [
    {"name": "report", "task": "report", "after": ["left", "checks"]},
    {"name": "fetch", "task": "fetch", "args": {"exact": 1.000000000000000000001}},
    {"name": "left", "task": "left", "after": ["fetch"]},
    {"name": "checks", "after": ["fetch"], "dag": {"nodes": [
        {"name": "a", "task": "check_a"}, {"name": "b", "task": "check_b"},
        {"name": "merge", "task": "merge", "after": ["a", "b"]}]}}]}$$);
SELECT task, node, state, dependency_mode, parents FROM regress.dag ORDER BY node;
SELECT args FROM pdoflow.jobs WHERE node = 'fetch';
SELECT regress.work('fetch', result => '1');
SELECT task, state FROM pdoflow.jobs WHERE state = 'queued' ORDER BY task;
SELECT regress.work('left', result => '"L"'), regress.work('check_a'), regress.work('check_b');
SELECT regress.work('merge', result => '"M"');
-- Results of DAG parents are keyed by node name.
SELECT task, parent_results FROM pdoflow.claim(1, tasks => ARRAY['report']);

-- The posting given to submit_dag supplies queue and priority.
SELECT pdoflow.create_posting('dags', queue => 'dagq', priority => 3) AS dags \gset
SELECT name FROM pdoflow.submit_dag('{"nodes": [{"name": "one", "task": "t"}, {"name": "two", "task": "t", "queue": "own"}]}', :'dags');
SELECT node, queue, priority FROM pdoflow.jobs WHERE posting = :'dags' ORDER BY node;

-- Edges as pairs, and mode any in a DAG.
SELECT name FROM pdoflow.submit_dag('{"nodes": [{"name": "p", "task": "t"}, {"name": "q", "task": "t"},
                                                 {"name": "r", "task": "t", "mode": "any"}],
                                      "edges": [["p", "r"], ["q", "r"]]}');
SELECT node, dependency_mode, parents FROM regress.dag WHERE node = 'r';

-- Bad DAGs are refused whole.
SELECT count(*) AS before FROM pdoflow.jobs \gset
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t", "after": ["c"]}, {"name": "b", "task": "t", "after": ["a"]}, {"name": "c", "task": "t", "after": ["b"]}]}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t", "after": ["nope"]}]}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t"}, {"name": "a", "task": "t"}]}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": []}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"task": "t"}]}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t", "priority": 1.5}]}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t", "depends_on": ["00000000-0000-7000-8000-000000000000"]}]}')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('{"nodes": [{"name": "a", "task": "t"}]}', '00000000-0000-7000-8000-000000000000')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag('[]')$$);
SELECT regress.failure($$SELECT pdoflow.submit_dag(NULL)$$);
SELECT count(*) = :before AS nothing_written FROM pdoflow.jobs;

-- Every invariant across the tables still holds.
SELECT * FROM pdoflow.check_consistency();
