// ocx from a real client outside the server (node-postgres from npm):
// LISTEN/NOTIFY wake-ups, durable subscriptions with resume after a
// disconnect, a consumer group of three clients, the command queue, and
// ocx.to_cloudevent checked with the official CloudEvents SDK.
//
// Needs PGHOST/PGPORT/PGUSER of a running cluster and a database with ocx
// created (OCX_NODE_DB, default ocx_node).  test/run.sh provides both.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { CloudEvent, ValidationError } from 'cloudevents';

const database = process.env.OCX_NODE_DB || 'ocx_node';
const clients = [];

async function connect() {
  const c = new pg.Client({ database });
  await c.connect();
  clients.push(c);
  return c;
}

async function close(c) {
  const i = clients.indexOf(c);
  if (i >= 0) clients.splice(i, 1);
  await c.end();
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Is the ocx background worker running in this database?  Without it the
// test runs the worker's bus task itself, as the worker would.
let workerRuns = false;
let admin;

before(async () => {
  admin = await connect();
  // with ocx preloaded, CREATE EXTENSION starts the database's worker; give it a moment
  const preloaded = (await admin.query(`SELECT current_setting('shared_preload_libraries') ~ 'ocx' AS p`)).rows[0].p;
  for (let i = 0; i < (preloaded ? 100 : 1) && !workerRuns; i++) {
    const r = await admin.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND backend_type = 'ocx worker'`);
    workerRuns = r.rows[0].n > 0;
    if (!workerRuns) await sleep(100);
  }
  console.log(workerRuns ? 'the ocx worker sends the wake-ups'
                         : 'no ocx worker: the test runs its bus task itself');
});

after(async () => {
  for (const c of [...clients]) await c.end();
});

// Wait for a notification on channel that satisfies pred.
function waitFor(client, channel, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.removeListener('notification', on);
      reject(new Error(`no NOTIFY on ${channel} within ${ms} ms`));
    }, ms);
    function on(msg) {
      if (msg.channel !== channel) return;
      const payload = JSON.parse(msg.payload);
      if (!pred(payload)) return;
      clearTimeout(timer);
      client.removeListener('notification', on);
      resolve(payload);
    }
    client.on('notification', on);
  });
}

// Is cursor a ("txid/position") at or after cursor b in log order?
function cursorAtOrAfter(a, b) {
  const [ta, pa] = a.split('/').map(BigInt);
  const [tb, pb] = b.split('/').map(BigInt);
  return ta > tb || (ta === tb && pa >= pb);
}

// A wake-up carries the cursor and a count, nothing that names a stream or a type.
function assertCursorOnly(p) {
  for (const k of Object.keys(p))
    assert.ok(['cursor', 'global_position', 'count', 'immediate'].includes(k), `unexpected payload key ${k}`);
}

// What the worker does after a commit; only needed when no worker runs.
async function tick() {
  if (!workerRuns) await admin.query('SELECT ocx._bus_tick()');
}

test('an append wakes a LISTENing client on ocx_events and ocx_<category>', async () => {
  const listener = await connect();
  const writer = await connect();
  await listener.query('LISTEN ocx_events');
  await listener.query('LISTEN ocx_nodeorder');
  let last = null;   // set before the commit, so before any wake-up for it
  const onEvents = waitFor(listener, 'ocx_events', (p) => last !== null && cursorAtOrAfter(p.cursor, last));
  const onCategory = waitFor(listener, 'ocx_nodeorder');
  await writer.query('BEGIN');
  await writer.query(`SELECT ocx.append('nodeorder-1', 0,
      '[{"type": "Placed", "data": {"n": 1}}, {"type": "Paid", "data": {"n": 2}}]')`);
  last = (await writer.query(`SELECT "cursor"::text AS c FROM ocx.read_stream('nodeorder-1')
                               ORDER BY stream_version DESC LIMIT 1`)).rows[0].c;
  await writer.query('COMMIT');
  await tick();
  const ev = await onEvents;
  const cat = await onCategory;
  assert.ok(ev.count >= 1);
  assert.match(ev.cursor, /^\d+\/\d+$/);
  assertCursorOnly(ev);
  assert.ok(cat.count >= 2);
  assertCursorOnly(cat);
  // the wake-up's cursor is usable: reading up to it returns the events
  const r = await writer.query(
    `SELECT stream_id, type FROM ocx.read_all(NULL, NULL, NULL, ARRAY['nodeorder'])
      WHERE "cursor" OPERATOR(ocx.<=) $1::ocx.cursor ORDER BY global_position`, [ev.cursor]);
  assert.deepEqual(r.rows.map((x) => x.type), ['Placed', 'Paid']);
  await close(listener);
  await close(writer);
});

test('a wake-up for a large batch stays small: a cursor and a count, no names', async () => {
  const listener = await connect();
  await listener.query('LISTEN ocx_events');
  const big = waitFor(listener, 'ocx_events', (p) => p.count >= 300, 10000);
  const raw = new Promise((resolve) => listener.on('notification', (m) => {
    if (JSON.parse(m.payload).count >= 300) resolve(m.payload);
  }));
  // 300 streams with long ids and long types in one transaction
  await admin.query(`DO $$ BEGIN
      FOR i IN 1..300 LOOP
        PERFORM ocx.append('nodebig-' || repeat('x', 150) || i, 0,
                           jsonb_build_object('type', 'Type' || repeat('t', 100) || i, 'data', '{}'::jsonb));
      END LOOP; END $$`);
  await tick();
  const p = await big;
  assertCursorOnly(p);
  const text = await raw;
  assert.ok(!text.includes('nodebig') && !text.includes('Typettt'), 'no stream ids or types');
  assert.ok(Buffer.byteLength(text) < 200, 'payload well under 8000 bytes');
  await close(listener);
});

test('ocx.notify_mode = immediate: the appending transaction itself notifies', async () => {
  const listener = await connect();
  const writer = await connect();
  await listener.query('LISTEN ocx_nodeimm');
  const woke = waitFor(listener, 'ocx_nodeimm', (p) => p.immediate === true, 5000);
  await writer.query('SET ocx.notify_mode = immediate');
  await writer.query(`SELECT ocx.append_event('nodeimm-1', NULL, 'Pinged', '{}')`);
  const p = await woke;   // no worker task involved
  assertCursorOnly(p);
  const r = await writer.query(`SELECT "cursor"::text AS c FROM ocx.read_stream('nodeimm-1')`);
  assert.equal(p.cursor, r.rows[0].c);
  await close(listener);
  await close(writer);
});

test('ocx.publish reaches listeners; oversized payloads are an OX310 error', async () => {
  const listener = await connect();
  await listener.query('LISTEN node_chat');
  const got = waitFor(listener, 'node_chat');
  await admin.query(`SELECT ocx.publish('node_chat', '{"hello": "node"}')`);
  assert.deepEqual(await got, { hello: 'node' });
  await assert.rejects(
    admin.query(`SELECT ocx.publish('node_chat', jsonb_build_object('k', repeat('x', 9000)))`),
    (e) => e.code === 'OX310');
  await close(listener);
});

// A listener idling in an open transaction holds the NOTIFY queue's tail: the
// server delivers nothing to it until it commits.  600 events in 600
// transactions, announced by the bus, and 20 published messages of 1,000 bytes
// (enough to span three queue pages, so pg_notification_queue_usage() is above
// 0 while it is stuck; a sanity check only: PostgreSQL advances the tail lazily,
// so the usage could be above 0 without a stuck listener too).  After COMMIT it
// gets every wake-up: the counts on its category channel add up to the 600
// events, the last cursor is the head, and every published message arrives.  The queue itself (8 GB) is not filled: at
// more than half full, measured, that takes about 67 s and 4.3 GB of disk,
// too much for make test.  test/specs/bus_stuck_listener.spec checks the
// server side (appends, the bus, a projection and a subscriber go on).
test('a listener stuck in an open transaction gets every wake-up and message once it commits', async () => {
  const listener = await connect();
  const writer = await connect();
  const got = [];
  listener.on('notification', (m) => got.push(m));
  await listener.query('LISTEN ocx_events');
  await listener.query('LISTEN ocx_nodestuck');
  await listener.query('LISTEN node_stuck_chat');
  await listener.query('BEGIN');
  await listener.query('SELECT 1');
  await writer.query(`DO $$ BEGIN
      FOR i IN 1..600 LOOP
        PERFORM ocx.append('nodestuck-' || (i % 7), NULL,
                           jsonb_build_object('type', 'Tick', 'data', '{}'::jsonb));
        COMMIT;
      END LOOP; END $$`);
  const head = (await writer.query(
    `SELECT txid::text || '/' || global_position AS c, global_position AS p FROM ocx.events
      WHERE stream_id LIKE 'nodestuck-%' ORDER BY txid DESC, global_position DESC LIMIT 1`)).rows[0];
  // the bus announces up to the head (polled, 20 s deadline)
  for (let deadline = Date.now() + 20000; ; ) {
    await tick();
    const r = await writer.query(
      'SELECT events_position >= $1::bigint AS done FROM ocx.bus_state', [head.p]);
    if (r.rows[0].done) break;
    assert.ok(Date.now() < deadline, 'the bus did not announce the 600 events within 20 s');
    await sleep(20);
  }
  for (let i = 1; i <= 20; i++)
    await writer.query(`SELECT ocx.publish('node_stuck_chat', jsonb_build_object('i', $1::int, 'pad', repeat('x', 1000)))`, [i]);
  const usage = (await writer.query('SELECT pg_notification_queue_usage() AS u')).rows[0].u;
  assert.ok(usage > 0, `the stuck listener holds the queue (usage ${usage})`);
  assert.equal(got.length, 0, 'nothing is delivered inside the open transaction');
  await listener.query('COMMIT');
  const on = (ch) => got.filter((m) => m.channel === ch).map((m) => JSON.parse(m.payload));
  const sum = (l) => l.reduce((s, p) => s + p.count, 0);
  for (let deadline = Date.now() + 10000; ; ) {
    if (sum(on('ocx_nodestuck')) >= 600 && on('node_stuck_chat').length >= 20) break;
    if (Date.now() > deadline) break;
    await listener.query('SELECT 1');   // a round trip: whatever the server sent is read
    await sleep(20);
  }
  const cat = on('ocx_nodestuck');
  assert.equal(sum(cat), 600, 'the wake-ups on the category channel count the 600 events');
  assert.equal(cat[cat.length - 1].cursor, head.c, 'the last wake-up is at the head');
  assert.ok(on('ocx_events').some((p) => cursorAtOrAfter(p.cursor, head.c)), 'ocx_events reaches the head');
  assert.deepEqual(on('node_stuck_chat').map((p) => p.i), [...Array(20).keys()].map((i) => i + 1),
                   'every published message, in order');
  await close(listener);
  await close(writer);
});

test('a subscriber polls and acks, disconnects mid-stream, and resumes with nothing lost or repeated', async () => {
  await admin.query(`SELECT ocx.create_subscription('node_sub', categories => ARRAY['nodesub'])`);
  const listener = await connect();
  await listener.query('LISTEN ocx_nodesub');
  const woke = waitFor(listener, 'ocx_nodesub', (p) => p.count >= 1);
  const writer = await connect();
  for (let i = 1; i <= 10; i++)
    await writer.query(`SELECT ocx.append('nodesub-' || ($1::int % 3), NULL,
        jsonb_build_object('type', 'Step', 'data', jsonb_build_object('i', $1::int)))`, [i]);
  await tick();
  await woke;

  const processed = [];
  let consumer = await connect();
  // first batch: processed and acknowledged
  let r = await consumer.query(`SELECT data, "cursor"::text AS cursor FROM ocx.poll('node_sub', 4)`);
  assert.equal(r.rows.length, 4);
  processed.push(...r.rows.map((x) => x.data.i));
  await consumer.query('SELECT ocx.ack($1, $2::ocx.cursor)', ['node_sub', r.rows.at(-1).cursor]);
  // second batch: received, then the client dies before it acknowledges
  r = await consumer.query(`SELECT data FROM ocx.poll('node_sub', 4)`);
  assert.equal(r.rows.length, 4);
  await close(consumer);

  // a new connection resumes after the acknowledged cursor
  consumer = await connect();
  for (;;) {
    r = await consumer.query(`SELECT data, "cursor"::text AS cursor FROM ocx.poll('node_sub', 3)`);
    if (r.rows.length === 0) break;
    processed.push(...r.rows.map((x) => x.data.i));
    await consumer.query('SELECT ocx.ack($1, $2::ocx.cursor)', ['node_sub', r.rows.at(-1).cursor]);
  }
  assert.deepEqual(processed, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  await close(consumer);
  await close(listener);
  await close(writer);
});

test('a consumer group of three clients receives every event exactly once', async () => {
  await admin.query(`SELECT ocx.create_subscription('node_group', categories => ARRAY['nodegrp'],
                                                    partitions => 6)`);
  const members = ['c1', 'c2', 'c3'];
  const conns = {};
  for (const m of members) {
    conns[m] = await connect();
    await conns[m].query(`SELECT * FROM ocx.poll('node_group', 1, $1)`, [m]);
  }
  const writer = await connect();
  const expected = [];
  for (let i = 1; i <= 45; i++) {
    const stream = `nodegrp-${i % 15}`;
    await writer.query(`SELECT ocx.append($1, NULL,
        jsonb_build_object('type', 'Item', 'data', jsonb_build_object('i', $2::int)))`, [stream, i]);
    expected.push(i);
  }
  await tick();

  const got = { c1: [], c2: [], c3: [] };
  const perStream = {};
  let idle = 0;
  while (idle < 3) {
    const counts = await Promise.all(members.map(async (m) => {
      const r = await conns[m].query(
        `SELECT stream_id, stream_version, data, "cursor"::text AS cursor
           FROM ocx.poll('node_group', 5, $1)`, [m]);
      for (const row of r.rows) {
        got[m].push(row.data.i);
        const s = (perStream[row.stream_id] ||= { consumers: new Set(), versions: [] });
        s.consumers.add(m);
        s.versions.push(Number(row.stream_version));
      }
      if (r.rows.length > 0)
        await conns[m].query('SELECT ocx.ack($1, $2::ocx.cursor, $3)',
                             ['node_group', r.rows.at(-1).cursor, m]);
      return r.rows.length;
    }));
    idle = counts.every((n) => n === 0) ? idle + 1 : 0;
  }
  const all = [...got.c1, ...got.c2, ...got.c3].sort((a, b) => a - b);
  assert.deepEqual(all, expected, 'every event exactly once');
  for (const m of members) assert.ok(got[m].length > 0, `${m} received a share`);
  for (const [stream, s] of Object.entries(perStream)) {
    assert.deepEqual(s.versions, [...s.versions].sort((a, b) => a - b), `${stream} in order`);
  }
  for (const m of members) await close(conns[m]);
  await close(writer);
});

test('commands: NOTIFY ocx_commands wakes a claimer that claims and completes', async () => {
  const claimer = await connect();
  await claimer.query('LISTEN ocx_commands');
  const woke = waitFor(claimer, 'ocx_commands', (p) => p.count >= 1 && p.types === undefined);
  const sent = await admin.query(`SELECT ocx.send_command('node.Email', '{"to": "a@example.org"}') AS id`);
  await tick();
  await woke;
  const r = await claimer.query(`SELECT * FROM ocx.claim_commands(ARRAY['node.Email'], 10, '30 seconds', 'node')`);
  assert.equal(r.rows.length, 1);
  assert.equal(r.rows[0].command_id, sent.rows[0].id);
  assert.equal(r.rows[0].correlation_id, sent.rows[0].id);
  assert.match(r.rows[0].claim_token, /^[0-9a-f-]{36}$/);
  await claimer.query('SELECT ocx.complete_command($1, $2, $3)',
                      [r.rows[0].command_id, { delivered: true }, r.rows[0].claim_token]);
  const s = await admin.query('SELECT status, result FROM ocx.command_status WHERE command_id = $1',
                              [sent.rows[0].id]);
  assert.deepEqual(s.rows[0], { status: 'succeeded', result: { delivered: true } });
  await close(claimer);
});

test('the worker runs an in-server handler; what it appends carries correlation and causation', async () => {
  await admin.query(`CREATE FUNCTION node_ship(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM ocx.append('nodeship-' || (c.data->>'id'), 0, '{"type": "Shipped", "data": {}}');
      RETURN jsonb_build_object('shipped', c.data->'id');
    END $$`);
  await admin.query(`SELECT ocx.define_command_handler('node.Ship', 'node_ship(ocx.command)')`);
  const corr = '22222222-3333-4444-8555-666666666666';
  const sent = await admin.query(`SELECT ocx.send_command('node.Ship', '{"id": 7}', $1) AS id`, [corr]);
  const id = sent.rows[0].id;
  let status;
  for (let i = 0; i < 100; i++) {
    if (!workerRuns) await admin.query('SELECT ocx._command_tick()');
    status = (await admin.query('SELECT status, result FROM ocx.command_status WHERE command_id = $1', [id])).rows[0];
    if (status.status === 'succeeded') break;
    await sleep(50);
  }
  assert.deepEqual(status, { status: 'succeeded', result: { shipped: 7 } });
  const e = await admin.query(`SELECT correlation_id, causation_id FROM ocx.read_stream('nodeship-7')`);
  assert.deepEqual(e.rows, [{ correlation_id: corr, causation_id: id }]);
});

test('ocx.to_cloudevent output is a valid CloudEvent for the official SDK', async () => {
  await admin.query(`SELECT ocx.append('nodece-1', 0, '[
      {"type": "com.example.order.placed", "data": {"total": 12.5, "items": ["a", "b"]},
       "correlation_id": "11111111-2222-4333-8444-555555555555",
       "metadata": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}},
      {"type": "com.example.order.paid", "data": {}, "source": "urn:example:payments"}]')`);
  const r = await admin.query(`SELECT ocx.to_cloudevent(e) AS ce, e.event_id, e.type
                                 FROM ocx.read_stream('nodece-1') e`);
  assert.equal(r.rows.length, 2);
  for (const row of r.rows) {
    const ce = new CloudEvent(row.ce, true);   // strict: throws ValidationError when invalid
    assert.equal(ce.validate(), true);
    assert.equal(ce.specversion, '1.0');
    assert.equal(ce.id, row.event_id);
    assert.equal(ce.type, row.type);
    assert.ok(ce.source.length > 0);
  }
  const first = new CloudEvent(r.rows[0].ce);
  assert.deepEqual(first.data, { total: 12.5, items: ['a', 'b'] });
  assert.equal(first.correlationid, '11111111-2222-4333-8444-555555555555');
  // the SDK's own serialization goes back into ocx losslessly (under a new id)
  const again = { ...JSON.parse(JSON.stringify(first)), id: '0194f1a2-0000-7000-8000-00000000c0de' };
  await admin.query('SELECT ocx.append_cloudevents($1, 0, $2)', ['nodece-2', again]);
  const back = await admin.query(`SELECT ocx.to_cloudevent(e) AS ce FROM ocx.read_stream('nodece-2') e`);
  // (JavaScript dates keep milliseconds, so the time is compared at that precision)
  const { time: t1, ...rest1 } = back.rows[0].ce;
  const { time: t0, ...rest0 } = r.rows[0].ce;
  assert.deepEqual(rest1, { ...rest0, id: again.id });
  assert.equal(new Date(t1).getTime(), new Date(t0).getTime());
  // and the SDK rejects what is not a CloudEvent, so the checks above mean something
  const { type, ...typeless } = r.rows[0].ce;
  assert.throws(() => new CloudEvent(typeless, true), ValidationError);
});
