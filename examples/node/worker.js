// A pdoflow worker in plain SQL (node-postgres): claim a batch, run each job,
// heartbeat while it runs, finish it with its result or error.
//
//     PDOFLOW_DATABASE_URL=postgresql://app@db/app node worker.js [--until-idle]
//
// Every call is one statement outside any transaction, so it also works
// through PgBouncer in transaction mode (there, pass --poll: LISTEN needs a
// session). SIGTERM or SIGINT: stop claiming, finish the running job, hand
// back the rest.
'use strict';
const os = require('node:os');
const { parseArgs } = require('node:util');
const { Client } = require('pg');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The handlers: task name -> async function(args, job) returning a JSON value.
const handlers = {
  add: async (args) => ({ sum: args.a + args.b }),
  fail: async () => { throw new Error('this job always fails'); },
  slow: async (args, job) => {
    const steps = args.steps ?? 5;
    for (let step = 1; step <= steps; step++) {
      await sleep((args.step_seconds ?? 1) * 1000);
      await job.progress({ step, of: steps }); // also renews the lease
    }
    return { steps };
  },
};

const { values: options } = parseArgs({
  options: {
    queues: { type: 'string', default: 'default' }, // comma-separated
    batch: { type: 'string', default: '10' }, // jobs per claim
    lease: { type: 'string', default: '60' }, // seconds; heartbeats every third of it
    name: { type: 'string', default: `node-${os.hostname()}-${process.pid}` },
    'idle-wait': { type: 'string', default: '10' }, // seconds between claims when idle
    poll: { type: 'boolean', default: false }, // no LISTEN (PgBouncer in transaction mode)
    'until-idle': { type: 'boolean', default: false }, // exit once a claim finds nothing
  },
});
const lease = Number(options.lease);
const log = (message) => console.log(`[${options.name}] ${message}`);

// JSON goes in as text cast to jsonb: node-postgres would turn a JS array
// into a PostgreSQL array, not a JSON one.
const json = (value) => JSON.stringify(value);

async function run(client, { id, attempt, task, args }) {
  log(`run job ${id} attempt ${attempt}: ${task} ${json(args)}`);
  const job = {
    progress: (value) => client.query('SELECT pdoflow.progress($1, $2, $3::jsonb)', [id, attempt, json(value)]),
  };
  // Renew the lease every third of it while the handler runs.
  const beats = setInterval(async () => {
    try {
      const { rows } = await client.query('SELECT pdoflow.heartbeat($1, $2) AS until', [id, attempt]);
      log(`heartbeat job ${id}: lease until ${rows[0].until.toISOString()}`);
    } catch (err) {
      log(`heartbeat job ${id} refused: ${err.message}`); // 55000: claim no longer current
    }
  }, (lease / 3) * 1000);
  let result, error;
  try {
    const handler = handlers[task];
    if (!handler) throw new Error(`no handler for task ${task}`);
    result = await handler(args, job);
  } catch (err) {
    error = `${err.name}: ${err.message}`;
  } finally {
    clearInterval(beats);
  }
  try {
    const { rows } = error === undefined
      ? await client.query('SELECT pdoflow.finish($1, $2, result => $3::jsonb) AS state', [id, attempt, json(result ?? null)])
      : await client.query('SELECT pdoflow.finish($1, $2, error => $3) AS state', [id, attempt, error]);
    log(`finished job ${id}: ${rows[0].state}${error ? ` (${error})` : ''}`);
  } catch (err) {
    if (err.code !== '55000') throw err;
    // The lease ran out (or the job was cancelled): this result is dropped,
    // and the job may run again elsewhere. Handlers must tolerate that.
    log(`finish of job ${id} refused: ${err.message}`);
  }
}

async function main() {
  const client = new Client({ connectionString: process.env.PDOFLOW_DATABASE_URL });
  client.on('error', (err) => { log(`connection lost: ${err.message}`); process.exit(1); });
  await client.connect();

  // Waiting when idle: until NOTIFY pdoflow, a stop signal, or --idle-wait.
  let stopping = false;
  let wake = () => {};
  const waitForJobs = () => new Promise((resolve) => {
    const timer = setTimeout(resolve, Number(options['idle-wait']) * 1000);
    wake = () => { clearTimeout(timer); resolve(); };
  });
  client.on('notification', () => wake()); // its payload is the queue's name
  const stop = (signal) => { log(`${signal}: stopping after the running job`); stopping = true; wake(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (!options.poll) await client.query('LISTEN pdoflow');

  log(`working queues ${options.queues}`);
  while (!stopping) {
    const { rows: claimed } = await client.query(
      `SELECT id, attempt, task, args FROM pdoflow.claim($1, queues => $2::text[],
              worker => $3, lease => make_interval(secs => $4))`,
      [Number(options.batch), options.queues.split(','), options.name, lease],
    );
    if (claimed.length === 0) {
      if (options['until-idle']) break;
      await waitForJobs();
      continue;
    }
    for (const [position, job] of claimed.entries()) {
      if (stopping) { // hand back the jobs not started: another worker takes them at once
        for (const { id, attempt } of claimed.slice(position)) {
          await client.query('SELECT pdoflow.release($1, $2)', [id, attempt]);
          log(`released job ${id}`);
        }
        break;
      }
      await run(client, job);
    }
  }
  await client.end();
  log('stopped');
}

main().catch((err) => { console.error(err); process.exit(1); });
