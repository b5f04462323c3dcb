// End-to-end tests of the dashboard of `pdoflow-run serve` in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core).
//
//   node --test --test-reporter=spec e2e.mjs
//
// Run by scripts/dashboard-test.sh, which starts the server against a fresh
// database and sets:
//   DASHBOARD_URL   the server's base address, e.g. http://127.0.0.1:PORT
//   ADMIN_TOKEN     a token whose role claim is ADMIN_ROLE (member of pdoflow_admin)
//   PRODUCER_TOKEN  a token whose role claim is PRODUCER_ROLE (member of pdoflow_producer)
//   DATABASE_URL    the server's database, for psql (as a superuser)
//   PSQL            the psql program
//   SCREENSHOT_DIR  where the screenshots go (docs/screenshots)
//   FAILURE_DIR     where a failing scenario's pages are photographed (optional)
//
// Each scenario makes the data it needs (by SQL) and signs in in a browser
// context of its own, so each can run and fail alone. A failure names what it
// saw, and photographs the scenario's open pages into FAILURE_DIR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { chromium, request } from 'playwright-core';

function need(name) {
    const value = process.env[name];
    if (!value) throw new Error(`${name} is not set (scripts/dashboard-test.sh sets it)`);
    return value;
}

const BASE_URL = need('DASHBOARD_URL').replace(/\/+$/, '');
const ADMIN_TOKEN = need('ADMIN_TOKEN');
const PRODUCER_TOKEN = need('PRODUCER_TOKEN');
const ADMIN_ROLE = process.env.ADMIN_ROLE || 'pdoflow_e2e_admin';
const PRODUCER_ROLE = process.env.PRODUCER_ROLE || 'pdoflow_e2e_producer';
const DATABASE_URL = need('DATABASE_URL');
const PSQL = process.env.PSQL || 'psql';
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR
    || path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'docs', 'screenshots');
const FAILURE_DIR = process.env.FAILURE_DIR || path.join(tmpdir(), 'pdoflow-dashboard-failures');

// How long something that should appear live may take (the contract says
// about 3 s), and any other wait for an element.
const LIVE_TIMEOUT = 10_000;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const SECTIONS = ['Overview', 'Jobs', 'Queues', 'Postings', 'Workers', 'Schedules'];

let browser;

before(async () => {
    browser = await chromium.launch({
        executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
            '--disable-component-update', '--disable-sync', '--no-first-run'],
    });
});

after(async () => {
    await browser?.close();
});

// ---- Helpers ----

// Runs SQL through psql as the superuser of DATABASE_URL; returns its
// unaligned, tuples-only output, trimmed.
function sql(query) {
    return new Promise((resolve, reject) => {
        const child = spawn(PSQL, ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', DATABASE_URL, '-f', '-'], {
            env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' },
            stdio: ['pipe', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (chunk) => { out += chunk; });
        child.stderr.on('data', (chunk) => { err += chunk; });
        child.on('error', reject);
        child.on('close', (code) => {
            if (code === 0) resolve(out.trim());
            else reject(new Error(`psql exited with ${code} on:\n${query}\n${err.trim()}`));
        });
        child.stdin.end(query);
    });
}

const literal = (text) => `'${String(text).replaceAll("'", "''")}'`;
const uniqueWord = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

async function enqueue(task, args, { queue = 'e2e', priority = 0, posting = null } = {}) {
    const named = [`queue => ${literal(queue)}`, `priority => ${priority}`];
    if (posting) named.push(`posting => ${literal(posting)}`);
    return sql(`SELECT pdoflow.enqueue(${literal(task)}, ${literal(JSON.stringify(args))}, ${named.join(', ')})`);
}

const jobState = (id) => sql(`SELECT state FROM pdoflow.jobs WHERE id = ${literal(id)}`);

// The trimmed text of the first element a locator finds (null when none).
// textContent, not innerText: CSS text-transform must not change what we compare.
async function textOf(locator) {
    if ((await locator.count()) === 0) return null;
    const text = await locator.first().textContent({ timeout: 2_000 });
    return text === null ? null : text.replace(/\s+/g, ' ').trim();
}

const show = (value) => (typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value, null, 0));

// Polls probe() (returning { ok, seen }) until ok, for up to timeout ms;
// fails naming the last thing seen.
async function eventually(what, probe, { timeout = LIVE_TIMEOUT } = {}) {
    const deadline = Date.now() + timeout;
    let seen = '(nothing yet)';
    for (;;) {
        try {
            const result = await probe();
            if (result.ok) return result.seen;
            seen = result.seen;
        } catch (error) {
            seen = `(error: ${String(error.message).split('\n')[0]})`;
        }
        if (Date.now() >= deadline) {
            throw new assert.AssertionError({ message: `${what}: not within ${timeout} ms; last saw ${show(seen)}` });
        }
        await delay(100);
    }
}

// Waits until the text of locator's first element satisfies want (a string:
// equal, case-insensitively; a RegExp: matches).
function waitForText(locator, want, what, timeout = LIVE_TIMEOUT) {
    return eventually(what, async () => {
        const text = await textOf(locator);
        const ok = text !== null && (want instanceof RegExp ? want.test(text) : text.toLowerCase() === want.toLowerCase());
        return { ok, seen: text };
    }, { timeout });
}

// Every action answers in #flash.
async function noteFlash(h, page, what) {
    const flash = await waitForText(page.locator('#flash'), /\S/, `#flash after ${what}`);
    h.t.diagnostic(`#flash after ${what}: ${show(flash)}`);
}

const pathOf = (page) => new URL(page.url()).pathname;

// Opens a dashboard path and insists on a successful answer.
async function open(page, pathname) {
    const response = await page.goto(pathname, { waitUntil: 'load' });
    assert.ok(response, `GET ${pathname}: no response`);
    if (response.status() >= 400) {
        const body = (await response.text().catch(() => '')).slice(0, 400);
        assert.fail(`GET ${pathname} answered ${response.status()}: ${body}`);
    }
    return response;
}

// Marks the document, so a later check can tell whether it was replaced (a
// full page load) or updated in place.
const mark = (page) => page.evaluate(() => { window.__marker = 1; });
async function assertSameDocument(page, what) {
    const marker = await page.evaluate(() => window.__marker).catch(() => undefined);
    assert.equal(marker, 1, `${what}: the page was reloaded or navigated (window.__marker is gone; now at ${page.url()})`);
}

// A scenario: a test with browser contexts of its own, closed at its end,
// whose open pages are described and photographed when it fails.
function scenario(name, fn) {
    test(name, { timeout: 120_000 }, async (t) => {
        const contexts = [];
        const dialogs = [];
        const h = {
            t,
            dialogs,
            async context(options = {}) {
                const context = await browser.newContext({ baseURL: BASE_URL, viewport: DESKTOP, ...options });
                context.setDefaultTimeout(LIVE_TIMEOUT);
                context.setDefaultNavigationTimeout(20_000);
                // A confirm() before an action is accepted (and noted).
                context.on('dialog', (dialog) => {
                    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
                    dialog.accept().catch(() => {});
                });
                contexts.push(context);
                return context;
            },
            // A new context signed in with token; returns its page, on /dashboard/.
            async signIn(token, role, options = {}) {
                const context = await h.context(options);
                const page = await context.newPage();
                await signInOn(page, token, role);
                return page;
            },
        };
        try {
            await fn(h);
        } catch (error) {
            await describeFailure(t, name, contexts, dialogs);
            throw error;
        } finally {
            for (const context of contexts) await context.close().catch(() => {});
        }
    });
}

async function signInOn(page, token, role) {
    await open(page, '/dashboard/login');
    await page.locator('#token').fill(token);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await eventually('signing in lands on /dashboard/', async () => ({
        ok: pathOf(page) === '/dashboard/',
        seen: `${page.url()} alert=${show(await textOf(page.locator('[role=alert]')))}`,
    }));
    await page.waitForLoadState('load');
    await waitForText(page.locator('#signed-in-role'), new RegExp(`\\b${role}\\b`), `#signed-in-role after signing in as ${role}`);
}

async function describeFailure(t, name, contexts, dialogs) {
    const slug = name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').slice(0, 60).toLowerCase();
    await mkdir(FAILURE_DIR, { recursive: true }).catch(() => {});
    let n = 0;
    for (const context of contexts) {
        for (const page of context.pages()) {
            n += 1;
            const file = path.join(FAILURE_DIR, `${slug}-${n}.png`);
            const shot = await page.screenshot({ path: file, fullPage: true }).then(() => file, (e) => `(no screenshot: ${e.message.split('\n')[0]})`);
            const text = await page.evaluate(() => document.body?.innerText ?? '').catch(() => '(no document)');
            t.diagnostic(`page ${n}: ${page.url()} (screenshot: ${shot})`);
            t.diagnostic(`page ${n} text: ${text.replace(/\s+/g, ' ').slice(0, 1200)}`);
        }
    }
    if (dialogs.length) t.diagnostic(`dialogs accepted: ${dialogs.join(' | ')}`);
}

// Rows of the jobs table: [{ id, state, queue, task }].
function jobRows(page) {
    return page.$$eval('#jobs tbody tr[data-job-id]', (rows) => rows.map((row) => ({
        id: row.getAttribute('data-job-id'),
        state: row.querySelector('td.state')?.textContent.trim() ?? null,
        queue: row.querySelector('td.queue')?.textContent.trim() ?? null,
        task: row.querySelector('td.task')?.textContent.trim() ?? null,
    })));
}

// ---- Scenarios ----

// The screenshots come first, so that docs/screenshots shows the realistic
// data made for them rather than what the other scenarios leave behind.
scenario('j. screenshots of every page, desktop and phone, with realistic data', async (h) => {
    // A little of everything: queues, finished and failed jobs, a limited
    // queue, a DAG in a posting with its first node done, a schedule, a
    // worker with a job in progress.
    await sql(`
        SELECT pdoflow.enqueue('send_email', jsonb_build_object('to', 'user' || i || '@example.com'), queue => 'emails')
        FROM generate_series(1, 6) AS i;
        SELECT pdoflow.enqueue('thumbnail', jsonb_build_object('image', i), queue => 'images', priority => 10)
        FROM generate_series(1, 3) AS i;
        SELECT pdoflow.enqueue('report', '{"month": "2026-11"}', queue => 'reports', run_at => now() + interval '1 hour');
        SELECT pdoflow.set_queue_limits('reports', max_running => 2);
        SELECT pdoflow.finish(c.id, c.attempt, result => '{"sent": true}')
        FROM pdoflow.claim(3, ARRAY['emails'], worker => 'mail-1') AS c;
        SELECT pdoflow.enqueue('import', '{"file": "missing.csv"}', queue => 'imports', max_attempts => 1);
        SELECT pdoflow.finish(c.id, c.attempt, error => 'file not found: missing.csv')
        FROM pdoflow.claim(1, ARRAY['imports'], worker => 'import-1') AS c;
        SELECT pdoflow.enqueue('webhook', '{"url": "https://example.com/hook"}', queue => 'webhooks', max_attempts => 3);
        SELECT pdoflow.finish(c.id, c.attempt, error => 'HTTP 503 from example.com')
        FROM pdoflow.claim(1, ARRAY['webhooks'], worker => 'mail-1') AS c;
        SELECT pdoflow.cancel(pdoflow.enqueue('send_email', '{"to": "nobody@example.com"}', queue => 'emails'));
    `);
    const posting = await sql(`SELECT pdoflow.create_posting('nightly etl', description => 'extract, clean, check, load', queue => 'etl')`);
    const dag = {
        nodes: [
            { name: 'extract', task: 'extract', args: { source: 'crm' } },
            { name: 'clean', task: 'clean', after: ['extract'] },
            { name: 'enrich', task: 'enrich', after: ['extract'] },
            { name: 'checks', after: ['clean'], dag: { nodes: [{ name: 'rows', task: 'check_rows' }, { name: 'schema', task: 'check_schema' }] } },
            { name: 'load', task: 'load', after: ['checks', 'enrich'] },
        ],
    };
    const dagJobs = (await sql(`SELECT name FROM pdoflow.submit_dag(${literal(JSON.stringify(dag))}::jsonb, ${literal(posting)})`)).split('\n');
    assert.equal(dagJobs.length, 6, `submit_dag made ${show(dagJobs)}`);
    await sql(`
        SELECT pdoflow.finish(c.id, c.attempt, result => '{"rows": 1204}') FROM pdoflow.claim(1, ARRAY['etl'], worker => 'etl-1') AS c;
        SELECT pdoflow.schedule('nightly', '0 3 * * *', 'report');
        SELECT pdoflow.register_worker('e2e-worker', ARRAY['e2e-live']);
    `);
    const running = await enqueue('e2e-live', { n: 10, note: 'claimed by e2e-worker' }, { priority: 100 });
    // Its page shows earlier attempts: one failed, one whose lease ran out.
    await sql(`
        SET pdoflow.retry_backoff_base = 0;
        SELECT pdoflow.finish(c.id, c.attempt, error => 'connection reset by peer (image-store:9000)')
        FROM pdoflow.claim(1, ARRAY['e2e'], worker => 'e2e-worker-old') AS c;
        SELECT count(*) FROM pdoflow.claim(1, ARRAY['e2e'], worker => 'e2e-worker-old', lease => '1 millisecond');
        SELECT pg_sleep(0.01);
        SELECT expired_requeued FROM pdoflow.sweep();
        -- Due now, whoever took the lease back (and with what backoff).
        UPDATE pdoflow.active_jobs SET run_at = now() WHERE id = ${literal(running)};
    `);
    const claimed = await sql(`SELECT id FROM pdoflow.claim(1, ARRAY['e2e'], worker => 'e2e-worker')`);
    assert.equal(claimed, running, `claim took ${show(claimed)}, not the job enqueued for it`);
    await sql(`SELECT pdoflow.progress(${literal(running)}, 3, '{"done": 40, "total": 100}')`);

    await mkdir(SCREENSHOT_DIR, { recursive: true });
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    const shoot = async (pathname, file, check) => {
        await open(page, pathname);
        if (check) await check();
        // The header's live-feed indicator (not in the contract), once connected.
        if (await page.locator('#live-status').count()) await waitForText(page.locator('#live-status'), 'live', `${pathname}: #live-status`).catch(() => {});
        await page.evaluate(() => document.fonts.ready);
        await page.screenshot({ path: path.join(SCREENSHOT_DIR, file), fullPage: true });
    };
    const contains = (selector, words) => async () => {
        for (const word of words) await waitForText(page.locator(selector), new RegExp(word), `${pathOf(page)}: ${selector} names ${word}`);
    };
    await shoot('/dashboard/', 'overview.png');
    await shoot('/dashboard/jobs', 'jobs.png', async () => {
        await page.locator(`#jobs tr[data-job-id="${running}"]`).waitFor();
    });
    await shoot(`/dashboard/jobs/${running}`, 'job.png', async () => {
        await waitForText(page.locator('[data-testid=job-state]'), 'running', '[data-testid=job-state] of the claimed job');
        await waitForText(page.locator('#attempts'), /connection reset by peer/, '#attempts lists the failed attempt\'s error');
        await waitForText(page.locator('#attempts'), /lease_expired/, '#attempts lists the lost lease');
    });
    await shoot('/dashboard/queues', 'queues.png', async () => {
        // Queues with waiting or running jobs, or with limits (imports has
        // only a failed job: pdoflow.queues does not list it).
        for (const queue of ['emails', 'images', 'reports', 'etl', 'webhooks', 'e2e']) {
            await page.locator(`tr[data-queue="${queue}"]`).waitFor().catch(() => assert.fail(`/dashboard/queues: no tr[data-queue="${queue}"]`));
        }
    });
    await shoot('/dashboard/postings', 'postings.png', async () => {
        await page.locator(`tr[data-posting-id="${posting}"]`).waitFor();
    });
    await shoot(`/dashboard/postings/${posting}`, 'posting-dag.png', async () => {
        await eventually(`svg#dag of the DAG posting has ${dagJobs.length} g.node`, async () => {
            const n = await page.locator('svg#dag g.node').count();
            return { ok: n >= dagJobs.length, seen: `${n} g.node` };
        });
        await contains('svg#dag', ['extract', 'load'])();
    });
    await shoot('/dashboard/workers', 'workers.png', contains('main, body', ['e2e-worker']));
    await shoot('/dashboard/schedules', 'schedules.png', contains('main, body', ['nightly', '0 3 \\* \\* \\*']));

    const phone = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE, { viewport: PHONE });
    for (const [pathname, file] of [['/dashboard/', 'overview-phone.png'], ['/dashboard/jobs', 'jobs-phone.png']]) {
        await open(phone, pathname);
        await phone.evaluate(() => document.fonts.ready);
        await phone.screenshot({ path: path.join(SCREENSHOT_DIR, file), fullPage: true });
    }
});

scenario('a. an admin signs in: HttpOnly, SameSite=Strict session cookie; a bad token is refused; sign-out', async (h) => {
    const login = await (await h.context()).newPage();
    await open(login, '/dashboard/login');
    const form = await login.locator('#login-form').evaluateAll((forms) => forms.map((f) => [f.getAttribute('method'), f.getAttribute('action')]));
    assert.deepEqual(form, [['post', '/dashboard/login']], `form#login-form [method, action]: ${show(form)}`);
    const field = await login.locator('#token').evaluateAll((els) => els.map((e) => [e.tagName.toLowerCase(), e.getAttribute('name')]));
    assert.deepEqual(field, [['textarea', 'token']], `#token [tag, name]: ${show(field)}`);

    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    const role = await textOf(page.locator('#signed-in-role'));
    assert.ok(role && role.includes(ADMIN_ROLE), `#signed-in-role: saw ${show(role)}, want it to contain ${ADMIN_ROLE}`);

    const cookies = await page.context().cookies();
    const session = cookies.find((cookie) => cookie.name === 'pdoflow_session');
    assert.ok(session, `no pdoflow_session cookie; cookies: ${show(cookies.map((c) => c.name))}`);
    assert.equal(session.httpOnly, true, `pdoflow_session: HttpOnly is ${session.httpOnly}`);
    assert.equal(session.sameSite, 'Strict', `pdoflow_session: SameSite is ${session.sameSite}`);
    assert.equal(session.path, '/', `pdoflow_session: Path is ${session.path}`);
    const scriptSees = await page.evaluate(() => document.cookie);
    assert.ok(!scriptSees.includes('pdoflow_session'), `document.cookie shows the session: ${show(scriptSees)}`);

    // A bad token: an alert, still on the login page, no session.
    const other = await (await h.context()).newPage();
    await open(other, '/dashboard/login');
    await other.locator('#token').fill('not.a.token');
    await other.getByRole('button', { name: 'Sign in', exact: true }).click();
    const alert = await waitForText(other.locator('[role=alert]'), /\S/, 'a bad token shows [role=alert]');
    assert.equal(pathOf(other), '/dashboard/login', `after a bad token the page is ${other.url()} (alert: ${show(alert)})`);
    const otherCookies = (await other.context().cookies()).map((c) => c.name);
    assert.ok(!otherCookies.includes('pdoflow_session'), `a bad token got a session cookie: ${show(otherCookies)}`);
    assert.equal(await other.locator('#token').count(), 1, 'the login form is gone after a bad token');

    // Signing out ends the session: dashboard pages lead to the login page again.
    await page.locator('#sign-out').click();
    await eventually('#sign-out leads to /dashboard/login', async () => ({ ok: pathOf(page) === '/dashboard/login', seen: page.url() }));
    await page.goto('/dashboard/jobs');
    assert.equal(pathOf(page), '/dashboard/login', `/dashboard/jobs after signing out: at ${page.url()}`);
});

scenario('a2. unsigned requests: / leads to /dashboard/, dashboard pages 303 to /dashboard/login', async () => {
    const api = await request.newContext({ baseURL: BASE_URL });
    try {
        const root = await api.get('/', { maxRedirects: 0 });
        assert.ok([301, 302, 303, 307, 308].includes(root.status()), `GET /: status ${root.status()}, want a redirect`);
        const rootTo = new URL(root.headers().location ?? '', BASE_URL).pathname;
        assert.equal(rootTo, '/dashboard/', `GET /: Location ${show(root.headers().location)}`);
        for (const pathname of ['/dashboard/', '/dashboard/jobs', '/dashboard/queues', '/dashboard/postings', '/dashboard/workers', '/dashboard/schedules']) {
            const response = await api.get(pathname, { maxRedirects: 0 });
            const location = response.headers().location;
            assert.equal(response.status(), 303, `GET ${pathname} without a session: status ${response.status()} (Location ${show(location)})`);
            assert.equal(new URL(location ?? '', BASE_URL).pathname, '/dashboard/login', `GET ${pathname} without a session: Location ${show(location)}`);
        }
        const forged = await api.get('/dashboard/jobs', { maxRedirects: 0, headers: { Cookie: 'pdoflow_session=forged' } });
        assert.equal(forged.status(), 303, `GET /dashboard/jobs with a forged session cookie: status ${forged.status()}`);
    } finally {
        await api.dispose();
    }
});

scenario('b. the jobs list shows a job enqueued by SQL live, without a reload', async (h) => {
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    const stream = page.waitForResponse((r) => (r.headers()['content-type'] ?? '').includes('text/event-stream'), { timeout: LIVE_TIMEOUT })
        .catch(() => null);
    await open(page, '/dashboard/jobs');
    await page.locator('#jobs').waitFor({ state: 'attached' });
    assert.ok(await stream, 'no text/event-stream response seen on /dashboard/jobs (the list updates through server-sent events)');
    await mark(page);

    const id = await sql(`SELECT pdoflow.enqueue('e2e-live', '{"n": 1}', queue => 'e2e')`);
    const enqueued = Date.now();
    assert.match(id, /^[0-9a-f-]{36}$/, `enqueue returned ${show(id)}`);
    const row = page.locator(`#jobs tr[data-job-id="${id}"]`);
    await eventually(`row tr[data-job-id="${id}"] appears in #jobs without a reload`, async () => ({
        ok: (await row.count()) === 1,
        seen: `${(await jobRows(page)).length} rows, first: ${show((await jobRows(page)).slice(0, 3))}`,
    }));
    const latency = Date.now() - enqueued;
    h.t.diagnostic(`the new job appeared ${latency} ms after its enqueue committed`);
    if (latency > 3_000) h.t.diagnostic(`that is later than the 3 s the dashboard promises`);
    await assertSameDocument(page, 'the new job appeared');
    // td.task may hold more than the task (the dashboard adds the short id).
    const cells = (await jobRows(page)).find((r) => r.id === id);
    assert.deepEqual({ state: cells.state?.toLowerCase(), queue: cells.queue, task: (cells.task ?? '').startsWith('e2e-live') },
        { state: 'queued', queue: 'e2e', task: true }, `the live row's cells: ${show(cells)}`);
});

scenario('c. the filter form narrows the jobs list by queue, state and text', async (h) => {
    const needle = uniqueWord('needle');
    const id = await enqueue('e2e-filter', { n: 2, note: needle });
    const elsewhere = await enqueue('e2e-filter', { n: 3, note: uniqueWord('other') }, { queue: 'e2e-other' });
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    await open(page, '/dashboard/jobs');
    const form = page.locator('#job-filters');
    await form.waitFor();
    for (const field of ['state', 'queue', 'task', 'posting', 'q']) {
        assert.equal(await form.locator(`[name="${field}"]`).count(), 1, `#job-filters has no field named ${field}`);
    }
    assert.equal(await form.locator('select[name="state"]').count(), 1, '#job-filters: state is not a <select>');

    await form.locator('[name="queue"]').fill('e2e');
    await form.getByRole('button', { name: 'Filter', exact: true }).click();
    await eventually('after filtering by queue e2e, every row is in queue e2e and ours is there', async () => {
        const rows = await jobRows(page);
        const ok = rows.length > 0 && rows.every((r) => r.queue === 'e2e') && rows.some((r) => r.id === id);
        return { ok, seen: `${page.url()}: ${rows.length} rows, queues ${show([...new Set(rows.map((r) => r.queue))])}` };
    });
    assert.ok(!(await jobRows(page)).some((r) => r.id === elsewhere), 'the job of queue e2e-other is still listed');
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('queue'), 'e2e', `the filter is not in the address (GET form): ${page.url()}`);

    // By state too: only queued jobs of e2e.
    await form.locator('[name="queue"]').fill('e2e');
    await form.locator('select[name="state"]').selectOption('queued');
    await form.getByRole('button', { name: 'Filter', exact: true }).click();
    await eventually('filtered by state queued and queue e2e', async () => {
        const rows = await jobRows(page);
        const ok = new URL(page.url()).searchParams.get('state') === 'queued'
            && rows.length > 0 && rows.every((r) => r.queue === 'e2e' && r.state?.toLowerCase() === 'queued');
        return { ok, seen: `${page.url()}: ${show(rows.slice(0, 5))}` };
    });

    // The search field finds the job by a word of its args, alone.
    await open(page, '/dashboard/jobs');
    await form.locator('[name="q"]').fill(needle);
    await form.getByRole('button', { name: 'Filter', exact: true }).click();
    await eventually(`q=${needle} lists exactly the job whose args hold it`, async () => {
        const rows = await jobRows(page);
        return { ok: new URL(page.url()).searchParams.get('q') === needle && rows.length === 1 && rows[0].id === id, seen: `${page.url()}: ${show(rows)}` };
    });
});

scenario('c2. the jobs list pages with a[rel=next], keeping the filter', async (h) => {
    const queue = uniqueWord('e2e-pages');
    await sql(`SELECT count(*) FROM pdoflow.enqueue_many('e2e-page', (SELECT array_agg(jsonb_build_object('n', i)) FROM generate_series(1, 300) AS i), queue => ${literal(queue)})`);
    try {
        const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
        await open(page, `/dashboard/jobs?queue=${queue}`);
        const first = await jobRows(page);
        assert.ok(first.length > 0 && first.length < 300, `page 1 of 300 jobs has ${first.length} rows`);
        assert.ok(first.every((r) => r.queue === queue), `page 1 has rows of other queues: ${show([...new Set(first.map((r) => r.queue))])}`);
        const next = page.locator('a[rel=next]');
        assert.equal(await next.count(), 1, `with 300 jobs and ${first.length} rows a page, there is no single a[rel=next] (found ${await next.count()})`);
        await next.click();
        await eventually('a[rel=next] leads to another page of the same queue', async () => {
            const rows = await jobRows(page);
            const ids = new Set(first.map((r) => r.id));
            const ok = rows.length > 0 && rows.every((r) => r.queue === queue && !ids.has(r.id));
            return { ok, seen: `${page.url()}: ${rows.length} rows, ${rows.filter((r) => ids.has(r.id)).length} of page 1, queues ${show([...new Set(rows.map((r) => r.queue))])}` };
        });
    } finally {
        await sql(`SELECT count(pdoflow.cancel(id)) FROM pdoflow.jobs WHERE queue = ${literal(queue)} AND state = 'queued'`);
    }
});

scenario('d. a job link opens the job page: state, args, timeline', async (h) => {
    const id = await enqueue('e2e-live', { n: 4 });
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    await open(page, '/dashboard/jobs');
    const link = page.locator(`#jobs tr[data-job-id="${id}"] a.job-link`);
    await link.waitFor({ timeout: LIVE_TIMEOUT }).catch(async () => {
        assert.fail(`no a.job-link in the row of job ${id}; rows: ${show((await jobRows(page)).slice(0, 5))}`);
    });
    await link.click();
    await eventually(`a.job-link leads to /dashboard/jobs/${id}`, async () => ({ ok: pathOf(page) === `/dashboard/jobs/${id}`, seen: page.url() }));
    await page.waitForLoadState('load');
    assert.ok(await textOf(page.locator('h1')), 'the job page has no h1 text');
    await waitForText(page.locator('[data-testid=job-state]'), 'queued', '[data-testid=job-state] of a new job');
    const args = await textOf(page.locator('#job-args'));
    assert.ok(args?.includes('"n"'), `#job-args: saw ${show(args)}, want it to contain "n"`);
    assert.equal(await page.locator('#timeline').count(), 1, 'no #timeline on the job page');
    const retry = page.locator('button[value=retry]');
    assert.equal(await retry.count(), 1, 'no button[value=retry] on the job page');
});

scenario('e. cancelling a job updates its state in place and confirms in #flash', async (h) => {
    const id = await enqueue('e2e-live', { n: 5 });
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    await open(page, `/dashboard/jobs/${id}`);
    await waitForText(page.locator('[data-testid=job-state]'), 'queued', '[data-testid=job-state] before cancelling');
    const button = page.locator('button[value=cancel]');
    const label = await textOf(button);
    assert.ok(label?.includes('Cancel job'), `button[value=cancel] reads ${show(label)}, want "Cancel job"`);
    const flashBefore = await textOf(page.locator('#flash'));
    await mark(page);
    await button.click();
    await waitForText(page.locator('[data-testid=job-state]'), 'cancelled', '[data-testid=job-state] after "Cancel job"');
    await assertSameDocument(page, 'the job was cancelled');
    const flash = await waitForText(page.locator('#flash'), /\S/, '#flash after cancelling');
    assert.notEqual(flash, flashBefore, `#flash did not change: ${show(flash)}`);
    assert.equal(await jobState(id), 'cancelled', 'the job is not cancelled in the database');
    if (h.dialogs.length) h.t.diagnostic(`dialogs: ${h.dialogs.join(' | ')}`);
});

scenario('e2. retrying a cancelled job queues it again', async (h) => {
    const id = await enqueue('e2e-live', { n: 6 });
    await sql(`SELECT pdoflow.cancel(${literal(id)})`);
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    await open(page, `/dashboard/jobs/${id}`);
    await waitForText(page.locator('[data-testid=job-state]'), 'cancelled', '[data-testid=job-state] of a cancelled job');
    const button = page.locator('button[value=retry]');
    const label = await textOf(button);
    assert.ok(label?.includes('Retry job'), `button[value=retry] reads ${show(label)}, want "Retry job"`);
    await button.click();
    await waitForText(page.locator('[data-testid=job-state]'), 'queued', '[data-testid=job-state] after "Retry job"');
    await waitForText(page.locator('#flash'), /\S/, '#flash after retrying');
    assert.equal(await jobState(id), 'queued', 'the job is not queued again in the database');
});

scenario('f. postings: progress, pause from the list, the DAG of a posting', async (h) => {
    const posting = await sql(`SELECT pdoflow.create_posting('e2e posting')`);
    const first = await enqueue('e2e-posting', { part: 1 }, { posting });
    await enqueue('e2e-posting', { part: 2 }, { posting });
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    await open(page, '/dashboard/postings');
    const row = page.locator(`tr[data-posting-id="${posting}"]`);
    await row.waitFor().catch(async () => {
        const ids = await page.$$eval('tr[data-posting-id]', (rows) => rows.map((r) => r.getAttribute('data-posting-id')));
        assert.fail(`no tr[data-posting-id="${posting}"]; rows: ${show(ids)}`);
    });
    assert.ok((await row.locator('progress').count()) >= 1, 'the posting row has no <progress>');
    await waitForText(row.locator('.posting-status'), 'active', '.posting-status of a new posting');
    await row.locator('button[value=pause]').click();
    await waitForText(page.locator(`tr[data-posting-id="${posting}"] .posting-status`), 'paused', '.posting-status after pause');
    await noteFlash(h, page, 'pausing the posting');
    assert.equal(await sql(`SELECT status FROM pdoflow.posting_status WHERE id = ${literal(posting)}`), 'paused',
        'the posting is not paused in the database');
    assert.equal(await jobState(first), 'queued', 'a job of the paused posting changed state');

    await open(page, `/dashboard/postings/${posting}`);
    await page.locator('svg#dag').waitFor().catch(() => assert.fail('no svg#dag on the posting page'));
    await eventually('svg#dag has a g.node per job (2)', async () => {
        const n = await page.locator('svg#dag g.node').count();
        return { ok: n >= 2, seen: `${n} g.node` };
    });
});

scenario('g. a producer is refused politely: "not allowed", still on the job page', async (h) => {
    const id = await enqueue('e2e-live', { n: 7 });
    const page = await h.signIn(PRODUCER_TOKEN, PRODUCER_ROLE);
    await open(page, `/dashboard/jobs/${id}`);
    await waitForText(page.locator('[data-testid=job-state]'), 'queued', '[data-testid=job-state] as the producer sees it');
    const errors = [];
    page.on('response', (response) => {
        if (response.request().isNavigationRequest() && response.status() >= 400) errors.push(`${response.status()} ${response.url()}`);
    });
    await page.locator('button[value=cancel]').click();
    const flash = await waitForText(page.locator('#flash'), /not allowed/i, '#flash after a producer cancels');
    assert.match(flash, /admin/i, `#flash names no role that may cancel: ${show(flash)}`);
    assert.equal(pathOf(page), `/dashboard/jobs/${id}`, `after the refusal the page is ${page.url()}`);
    assert.deepEqual(errors, [], `the refusal navigated to an error page: ${show(errors)}`);
    assert.ok(await textOf(page.locator('h1')), 'the job page lost its h1 after the refusal');
    assert.equal(await jobState(id), 'queued', 'the producer cancelled the job after all');
    await waitForText(page.locator('[data-testid=job-state]'), 'queued', '[data-testid=job-state] after the refusal');
});

scenario('h. queues: an admin pauses and resumes queue e2e', async (h) => {
    await enqueue('e2e-live', { n: 8 });
    try {
        const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
        await open(page, '/dashboard/queues');
        const row = () => page.locator('tr[data-queue="e2e"]');
        await row().waitFor().catch(async () => {
            const queues = await page.$$eval('tr[data-queue]', (rows) => rows.map((r) => r.getAttribute('data-queue')));
            assert.fail(`no tr[data-queue="e2e"]; rows: ${show(queues)}`);
        });
        await waitForText(row().locator('.queue-paused'), 'no', '.queue-paused of queue e2e before pausing');
        await row().locator('button[value=pause]').click();
        await waitForText(row().locator('.queue-paused'), 'yes', '.queue-paused after pause');
        await noteFlash(h, page, 'pausing queue e2e');
        assert.equal(await sql(`SELECT paused FROM pdoflow.queues WHERE queue = 'e2e'`), 't', 'queue e2e is not paused in the database');
        await row().locator('button[value=resume]').click();
        await waitForText(row().locator('.queue-paused'), 'no', '.queue-paused after resume');
        assert.equal(await sql(`SELECT paused FROM pdoflow.queues WHERE queue = 'e2e'`), 'f', 'queue e2e is still paused in the database');
    } finally {
        await sql(`SELECT pdoflow.resume_queue('e2e')`);
    }
});

scenario('i. the JSON API answers with the session cookie (and a bearer token)', async (h) => {
    const id = await enqueue('e2e-live', { n: 9 });
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    const api = page.context().request;

    const stats = await api.get('/api/stats');
    assert.equal(stats.status(), 200, `GET /api/stats: ${stats.status()} ${(await stats.text()).slice(0, 300)}`);
    assert.match(stats.headers()['content-type'] ?? '', /json/, `GET /api/stats: Content-Type ${stats.headers()['content-type']}`);
    const body = await stats.json();
    for (const field of ['queued', 'running', 'finished', 'failed']) {
        assert.equal(typeof body[field], 'number', `/api/stats: ${field} is ${show(body[field])} in ${show(body)}`);
    }
    assert.ok(body.queued >= 1, `/api/stats: queued is ${body.queued} with job ${id} queued`);

    const jobs = await api.get('/api/jobs?status=queued');
    assert.equal(jobs.status(), 200, `GET /api/jobs?status=queued: ${jobs.status()} ${(await jobs.text()).slice(0, 300)}`);
    const list = await jobs.json();
    assert.ok(Array.isArray(list), `/api/jobs?status=queued is not an array: ${show(list).slice(0, 300)}`);
    assert.ok(list.length > 0, '/api/jobs?status=queued is empty with queued jobs in the database');
    for (const job of list) {
        assert.ok(job.id && job.queue, `/api/jobs element without id or queue: ${show(job)}`);
        assert.equal(job.status, 'queued', `/api/jobs?status=queued element: ${show(job)}`);
    }
    if (!list.some((job) => job.id === id)) h.t.diagnostic(`/api/jobs?status=queued (${list.length} jobs) does not list the newest job ${id}`);

    const bogus = await api.get('/api/jobs?status=bogus');
    assert.equal(bogus.status(), 400, `GET /api/jobs?status=bogus: ${bogus.status()} ${(await bogus.text()).slice(0, 300)}`);

    const bearer = await request.newContext({ baseURL: BASE_URL, extraHTTPHeaders: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
    try {
        const viaToken = await bearer.get('/api/stats');
        assert.equal(viaToken.status(), 200, `GET /api/stats with a bearer token: ${viaToken.status()}`);
        assert.equal(typeof (await viaToken.json()).queued, 'number', 'GET /api/stats with a bearer token: no numeric queued');
    } finally {
        await bearer.dispose();
    }
});

scenario('k. keyboard and phone: Tab reaches a visible "Skip to content"; at 390 px the nav works and nothing scrolls sideways', async (h) => {
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    await open(page, '/dashboard/');
    await page.keyboard.press('Tab');
    const focused = await eventually('the first Tab focuses a visible "Skip to content" link', async () => {
        const seen = await page.evaluate(() => {
            const e = document.activeElement;
            if (!e || e === document.body) return null;
            const r = e.getBoundingClientRect();
            const s = getComputedStyle(e);
            return {
                tag: e.tagName.toLowerCase(), text: e.textContent.replace(/\s+/g, ' ').trim(), href: e.getAttribute('href'),
                box: [Math.round(r.x), Math.round(r.y), Math.round(r.width), Math.round(r.height)],
                visibility: s.visibility, opacity: s.opacity, viewport: [innerWidth, innerHeight],
            };
        });
        const ok = seen !== null && seen.tag === 'a' && /^skip to content$/i.test(seen.text)
            && seen.visibility === 'visible' && Number(seen.opacity) > 0
            && seen.box[2] > 1 && seen.box[3] > 1 && seen.box[0] >= 0 && seen.box[1] >= 0
            && seen.box[0] + seen.box[2] <= seen.viewport[0] && seen.box[1] + seen.box[3] <= seen.viewport[1];
        return { ok, seen };
    }, { timeout: 3_000 });
    assert.ok(focused.href?.startsWith('#') && focused.href.length > 1, `the skip link's href is ${show(focused.href)}`);
    const target = await page.locator(focused.href).count();
    assert.equal(target, 1, `the skip link points at ${focused.href}, which is not on the page`);

    // A phone: the jobs page (with a long job in it) fits 390 px, and the nav leads elsewhere.
    await enqueue('e2e-a-rather-long-task-name-for-narrow-screens', { note: 'x'.repeat(200) });
    const phone = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE, { viewport: PHONE });
    await open(phone, '/dashboard/jobs');
    const width = await phone.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= PHONE.width + 1, `/dashboard/jobs at ${PHONE.width} px scrolls sideways: scrollWidth ${width}`);
    for (const pathname of ['/dashboard/', '/dashboard/queues', '/dashboard/postings', '/dashboard/workers', '/dashboard/schedules']) {
        await open(phone, pathname);
        const w = await phone.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(w <= PHONE.width + 1, `${pathname} at ${PHONE.width} px scrolls sideways: scrollWidth ${w}`);
    }
    await open(phone, '/dashboard/jobs');
    const nav = phone.locator('nav[aria-label="Sections"]');
    assert.equal(await nav.count(), 1, 'no nav[aria-label="Sections"] at 390 px');
    const queuesLink = nav.getByRole('link', { name: 'Queues', exact: true });
    if (!(await queuesLink.isVisible())) {
        // A collapsed menu: its toggle must be there and visible.
        const toggle = phone.locator('button[aria-controls], button[aria-expanded], summary').filter({ visible: true }).first();
        assert.equal(await toggle.count(), 1, 'at 390 px the nav links are hidden and there is no visible menu button');
        await toggle.click();
        await queuesLink.waitFor({ state: 'visible' }).catch(() => assert.fail('at 390 px the menu button does not show the nav links'));
    }
    await queuesLink.click();
    await eventually('at 390 px the nav link Queues leads to /dashboard/queues', async () => ({ ok: pathOf(phone) === '/dashboard/queues', seen: phone.url() }));
});

scenario('l. every page has the common layout: skip link first, the Sections nav, role, sign-out, flash region', async (h) => {
    const page = await h.signIn(ADMIN_TOKEN, ADMIN_ROLE);
    const posting = await sql(`SELECT pdoflow.create_posting('e2e layout')`);
    const job = await enqueue('e2e-live', { n: 11 }, { posting });
    const pages = ['/dashboard/', '/dashboard/jobs', `/dashboard/jobs/${job}`, '/dashboard/queues', '/dashboard/postings',
        `/dashboard/postings/${posting}`, '/dashboard/workers', '/dashboard/schedules'];
    for (const pathname of pages) {
        await open(page, pathname);
        const firstLink = await page.evaluate(() => {
            const a = document.querySelector('body a[href]');
            return a ? a.textContent.replace(/\s+/g, ' ').trim() : null;
        });
        assert.match(firstLink ?? '', /^skip to content$/i, `${pathname}: the first link is ${show(firstLink)}`);
        const nav = page.locator('nav[aria-label="Sections"]');
        assert.equal(await nav.count(), 1, `${pathname}: no nav[aria-label="Sections"]`);
        const names = await nav.locator('a').evaluateAll((links) => links.map((a) => a.textContent.replace(/\s+/g, ' ').trim()));
        for (const section of SECTIONS) {
            assert.ok(names.includes(section), `${pathname}: the Sections nav lacks ${section}; it has ${show(names)}`);
        }
        const role = await textOf(page.locator('#signed-in-role'));
        assert.ok(role?.includes(ADMIN_ROLE), `${pathname}: #signed-in-role is ${show(role)}`);
        assert.equal(await page.locator('#sign-out').count(), 1, `${pathname}: no #sign-out`);
        const flash = await page.locator('#flash').evaluateAll((els) => els.map((e) => [e.tagName.toLowerCase(), e.getAttribute('role'), e.getAttribute('aria-live')]));
        assert.deepEqual(flash, [['div', 'status', 'polite']], `${pathname}: #flash is ${show(flash)}`);
        assert.ok(await textOf(page.locator('h1')), `${pathname}: no h1`);
    }
});
