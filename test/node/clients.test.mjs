// The node-postgres client examples (examples/clients/node) run against ocx:
// appends with expected versions and OX001 retries on a pool (without a
// reconnect per conflict), a command worker that completes every command
// exactly once with its claim token, and a subscriber that survives its
// connection being killed again and again without losing or repeating an
// event.
//
// Needs PGHOST/PGPORT/PGUSER of a running cluster and a database with ocx
// created (OCX_NODE_DB, default ocx_node); test/run.sh provides both and
// installs the examples' npm packages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { runTellers, balance } from '../../examples/clients/node/append.mjs';
import { runCommandWorker } from '../../examples/clients/node/worker.mjs';
import { runSubscriber } from '../../examples/clients/node/subscriber.mjs';
import { sleep } from '../../examples/clients/node/connection.mjs';

const database = process.env.OCX_NODE_DB || 'ocx_node';
let admin;

before(async () => {
  admin = new pg.Client({ database });
  await admin.connect();
});

after(async () => {
  await admin.end();
});

// Kill every backend of this database with the given application_name;
// returns how many were killed.
async function kill(applicationName) {
  const r = await admin.query(
    `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = $1`, [applicationName]);
  return r.rows[0].n;
}

async function until(what, pred, ms = 60000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// Every stream: versions 1..n, every event once, the balance never below zero.
async function checkAccounts(prefix, expectedOps) {
  const r = await admin.query(
    `SELECT stream_id, stream_version, event_id, type, data FROM ocx.read_all(NULL, NULL, NULL, ARRAY[$1])
      ORDER BY stream_id, stream_version`, [prefix]);
  assert.equal(r.rows.length, expectedOps, 'one event per operation');
  assert.equal(new Set(r.rows.map((e) => e.event_id)).size, expectedOps, 'no operation recorded twice');
  const streams = new Map();
  for (const e of r.rows) streams.set(e.stream_id, [...(streams.get(e.stream_id) ?? []), e]);
  for (const [stream, events] of streams) {
    assert.deepEqual(events.map((e) => Number(e.stream_version)), events.map((_, i) => i + 1), `${stream} gap-free`);
    for (let i = 1; i <= events.length; i++)
      assert.ok(balance(events.slice(0, i)) >= 0, `${stream}: balance at version ${i} not below zero`);
  }
  return r.rows;
}

test('appends with expected versions on a pool: OX001 is retried on the same connection', async () => {
  const pool = new pg.Pool({ database, max: 4 });
  let connections = 0;
  pool.on('connect', () => { connections++; });
  const stats = await runTellers(pool, { prefix: 'nodeacct', accounts: 3, tellers: 8, ops: 25 });
  await pool.end();
  assert.equal(stats.operations, 200);
  assert.ok(stats.conflicts > 0, `the tellers raced (${stats.conflicts} conflicts)`);
  assert.ok(connections <= 4, `${connections} connections for ${stats.conflicts} conflicts: none reopened`);
  const events = await checkAccounts('nodeacct', 200);
  assert.ok(events.some((e) => e.type === 'Withdrawn') && events.some((e) => e.type === 'WithdrawalRefused'),
            'withdrawals were decided on the state read');
  console.log(`tellers: ${stats.conflicts} OX001 retried over ${connections} connections`);
});

test('the problem the example avoids: pool.query() throws its connection away at every OX001', async () => {
  const pool = new pg.Pool({ database, max: 4 });
  let connections = 0;
  pool.on('connect', () => { connections++; });
  let conflicts = 0;
  await Promise.all(Array.from({ length: 8 }, async (_, t) => {
    for (let i = 0; i < 10; i++) {
      for (;;) {
        const { rows } = await pool.query(`SELECT ocx.stream_version('nodenaive-1') AS v`);
        try {
          await pool.query(`SELECT ocx.append_event('nodenaive-1', $1, 'Counted', '{}')`, [rows[0].v]);
          break;
        } catch (err) {
          if (err.code !== 'OX001') throw err;
          conflicts++;
        }
      }
    }
  }));
  await pool.end();
  assert.ok(conflicts > 0, 'the appends raced');
  // every client pg-pool destroyed was opened first; it destroyed one per OX001
  assert.ok(connections >= conflicts, `${connections} connections opened for ${conflicts} conflicts`);
  assert.ok(connections > 4);
  console.log(`pool.query(): ${conflicts} OX001 cost ${connections - 4}+ new connections`);
});

test('two command workers complete every command exactly once, across a failure and a killed connection', async () => {
  const type = 'nodeclient.Receipt';
  await admin.query(`SELECT ocx.define_command_handler($1, NULL,
                       '{"max_attempts": 5, "base_delay": "50 milliseconds", "max_delay": "1 second"}')`, [type]);
  const sent = [];
  const flaky = new Set();
  for (let i = 0; i < 40; i++) {
    const r = await admin.query('SELECT ocx.send_command($1, $2) AS id', [type, { n: i, flaky: i % 8 === 0 }]);
    sent.push(r.rows[0].id);
    if (i % 8 === 0) flaky.add(r.rows[0].id);
  }
  // the work: a receipt stream per command, which can only be created once
  const handle = async (client, cmd) => {
    await sleep(5);
    if (cmd.data.flaky && cmd.attempt === 1) throw new Error('flaky on its first attempt');
    const r = await client.query(`SELECT ocx.append_event($1, 0, 'ReceiptSent', $2::jsonb) AS v`,
                                 [`nodereceipt-${cmd.command_id}`, JSON.stringify(cmd.data)]);
    return { version: Number(r.rows[0].v) };
  };
  const ac = new AbortController();
  const connect = { database, application_name: 'nodeclient-worker' };
  const workers = ['w1', 'w2'].map((claimer) =>
    runCommandWorker({ connect, types: [type], claimer, handle, batch: 3, visibility: '2 seconds',
                       signal: ac.signal }));
  let killed = 0;
  try {
    const succeeded = async () => (await admin.query(
      `SELECT count(*)::int AS n FROM ocx.command_status WHERE type = $1 AND status = 'succeeded'`,
      [type])).rows[0].n;
    // kill the workers' connections while they are busy (a claimed command
    // whose transaction dies comes back after the 2 s visibility timeout)
    await until('some commands to succeed', async () => (await succeeded()) >= 10);
    killed = await kill('nodeclient-worker');
    await until('every command to succeed', async () => (await succeeded()) === sent.length);
  } finally {
    ac.abort();
  }
  const stats = await Promise.all(workers);
  const s = await admin.query(
    `SELECT command_id, status, attempts,
            (SELECT count(*)::int FROM jsonb_array_elements(history) h WHERE h->>'event' = 'succeeded') AS succeeded
       FROM ocx.command_status WHERE type = $1`, [type]);
  assert.equal(s.rows.length, sent.length);
  for (const c of s.rows) {
    assert.equal(c.status, 'succeeded');
    assert.equal(c.succeeded, 1, `${c.command_id} completed once`);
    if (flaky.has(c.command_id)) assert.ok(c.attempts >= 2, 'a flaky command failed once and was retried');
  }
  const e = await admin.query(
    `SELECT e.stream_id, e.causation_id, e.correlation_id, c.correlation_id AS command_correlation
       FROM ocx.read_all(NULL, NULL, NULL, ARRAY['nodereceipt']) e
       JOIN ocx.command_status c ON e.stream_id = 'nodereceipt-' || c.command_id`);
  assert.equal(e.rows.length, sent.length, 'one receipt per command');
  assert.deepEqual(new Set(e.rows.map((r) => r.causation_id)), new Set(sent));
  for (const r of e.rows) assert.equal(r.correlation_id, r.command_correlation);
  const total = stats.reduce((a, x) => ({ completed: a.completed + x.completed, failed: a.failed + x.failed,
                                          reconnects: a.reconnects + x.reconnects }));
  assert.equal(total.completed, sent.length, 'the workers completed each command once between them');
  // a flaky command's first attempt fails with fail_command, unless the kill
  // ended that attempt first
  assert.ok(total.failed >= 1, 'flaky commands were failed with fail_command');
  assert.ok(killed > 0 && total.reconnects >= 1, 'a worker lost its connection and came back');
  console.log(`workers: ${JSON.stringify(stats)}`);
});

test('a subscriber whose connection is killed again and again sees every event exactly once', async () => {
  await admin.query(`SELECT ocx.define_subscription('nodeclient_sub', categories => ARRAY['nodeclient'])`);
  await admin.query(`CREATE TABLE nodeclient_seen (event_id uuid, global_position bigint)`);
  const ac = new AbortController();
  const subscriber = runSubscriber({
    connect: { database, application_name: 'nodeclient-subscriber' },
    subscription: 'nodeclient_sub', channel: 'ocx_nodeclient', batch: 7, signal: ac.signal,
    // the effect, written in the transaction that acks it; slow enough that
    // kills land between poll and ack
    handle: async (client, e) => {
      await client.query('INSERT INTO nodeclient_seen VALUES ($1, $2)', [e.event_id, e.global_position]);
      await sleep(2);
    },
  });
  const writer = new pg.Client({ database });
  await writer.connect();
  let kills = 0;
  let stats;
  try {
    for (let b = 0; b < 30; b++) {
      await writer.query(`SELECT ocx.append('nodeclient-' || (g % 5), NULL,
                            jsonb_build_object('type', 'Noted', 'data', jsonb_build_object('b', $1::int, 'g', g)))
                            FROM generate_series(1, 10) g`, [b]);
      await sleep(Math.random() * 40);
      if (b % 3 === 0) kills += await kill('nodeclient-subscriber');
    }
    const count = async () => (await admin.query('SELECT count(*)::int AS n FROM nodeclient_seen')).rows[0].n;
    await until('the subscriber to catch up', async () => (await count()) >= 300);
    await sleep(1000);   // anything repeated late would show up now
  } finally {
    ac.abort();
    stats = await subscriber;
    await writer.end();
  }
  const r = await admin.query(
    `SELECT (SELECT count(*)::int FROM nodeclient_seen) AS seen,
            (SELECT count(DISTINCT event_id)::int FROM nodeclient_seen) AS distinct_seen,
            (SELECT count(*)::int FROM ocx.read_all(NULL, NULL, NULL, ARRAY['nodeclient']) e
              WHERE e.event_id NOT IN (SELECT event_id FROM nodeclient_seen)) AS missed`);
  assert.deepEqual(r.rows[0], { seen: 300, distinct_seen: 300, missed: 0 });
  assert.ok(kills >= 3, `${kills} kills landed`);
  assert.ok(stats.reconnects >= 3, `the subscriber reconnected ${stats.reconnects} times`);
  console.log(`subscriber: ${kills} kills, ${JSON.stringify(stats)}`);
});
