// A pdoflow producer in plain SQL (node-postgres): enqueue jobs with
// pdoflow.enqueue, wait for their results with pdoflow.await_result, and check
// them (exit status 1 if any check fails). Run worker.js beside it.
//
//     PDOFLOW_DATABASE_URL=postgresql://app@db/app node producer.js
'use strict';
const { isDeepStrictEqual: same } = require('node:util');
const { Client } = require('pg');

const ENDED = ['succeeded', 'failed', 'cancelled'];
const deadline = Date.now() + 60_000; // for the whole run
const failures = [];
const show = (value) => JSON.stringify(value);

function check(ok, what) {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
}

async function main() {
  const client = new Client({ connectionString: process.env.PDOFLOW_DATABASE_URL });
  await client.connect();
  // Each enqueue returns the job's id. JSON goes in as text cast to jsonb.
  const enqueue = async (sql, ...params) => (await client.query(sql, params)).rows[0].id;
  // pdoflow.await_result: returns once the job ended, or its state at the timeout.
  const awaitResult = async (id, seconds = Math.max(0, (deadline - Date.now()) / 1000)) => (await client.query(
    'SELECT state, result, last_error, progress FROM pdoflow.await_result($1, make_interval(secs => $2))',
    [id, seconds],
  )).rows[0];

  // A long job that reports its progress, 20 quick ones, one that always fails.
  const slow = await enqueue("SELECT pdoflow.enqueue('slow', $1::jsonb) AS id", show({ steps: 6, step_seconds: 0.5 }));
  const adds = new Map(); // id -> expected sum
  for (let i = 0; i < 20; i++) {
    adds.set(await enqueue("SELECT pdoflow.enqueue('add', $1::jsonb) AS id", show({ a: i, b: i * i })), i + i * i);
  }
  const failing = await enqueue("SELECT pdoflow.enqueue('fail', max_attempts => 1) AS id"); // no retry: it ends failed
  // A unique job: while one job of task 'add' holds the key (and for an hour
  // after it succeeded), enqueueing the same key returns that job's id.
  const uniqueSql = "SELECT pdoflow.enqueue('add', $1::jsonb, unique_key => $2, unique_for => '1 hour') AS id";
  const unique = await enqueue(uniqueSql, show({ a: 1000, b: 1 }), 'add-1000-1');
  const again = await enqueue(uniqueSql, show({ a: 1000, b: 1 }), 'add-1000-1');
  console.log(`enqueued ${3 + adds.size} jobs; unique key twice: ${unique} and ${again}`);
  check(again === unique, "the second enqueue of unique key add-1000-1 returned the first job's id");

  // Follow the long job: short waits return its current state and progress.
  const seen = [];
  let job = await awaitResult(slow, 0.5);
  while (!ENDED.includes(job.state) && Date.now() < deadline) {
    if (job.progress !== null && !seen.some((p) => same(p, job.progress))) {
      console.log(`slow job ${job.state}, progress ${show(job.progress)}`);
      seen.push(job.progress);
    }
    job = await awaitResult(slow, 0.5);
  }
  check(job.state === 'succeeded' && same(job.result, { steps: 6 }), `slow job: ${job.state} with ${show(job.result)}`);
  check(seen.length > 0, `slow job: progress seen while it ran (${seen.length} reports)`);
  check(same(job.progress, { step: 6, of: 6 }), `slow job: last progress ${show(job.progress)}`);

  for (const [id, sum] of adds) {
    job = await awaitResult(id);
    check(job.state === 'succeeded' && same(job.result, { sum }), `add job ${id}: ${job.state} with ${show(job.result)}`);
  }

  job = await awaitResult(unique);
  check(job.state === 'succeeded' && same(job.result, { sum: 1001 }), `unique add job: ${job.state} with ${show(job.result)}`);

  job = await awaitResult(failing);
  check(job.state === 'failed' && (job.last_error ?? '').includes('this job always fails'),
    `fail job: ${job.state}, last_error ${show(job.last_error)}`);

  await client.end();
  if (failures.length > 0) {
    console.error(`producer: ${failures.length} check(s) failed`);
    process.exit(1);
  }
  console.log('producer: all checks passed');
}

main().catch((err) => { console.error(err); process.exit(1); });
