// ocx.metrics() read by a real Prometheus client-side parser from npm
// (parse-prometheus-text-format): every family has HELP and a counter or
// gauge TYPE, every sample is a number, and the counters move when events
// are appended.
//
// Needs PGHOST/PGPORT/PGUSER of a running cluster and a database with ocx
// created (OCX_NODE_DB, default ocx_node).  test/run.sh provides both.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import pg from 'pg';

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format');

const client = new pg.Client({ database: process.env.OCX_NODE_DB || 'ocx_node' });
await client.connect();
after(() => client.end());

async function scrape() {
  const text = (await client.query('SELECT ocx.metrics() AS m')).rows[0].m;
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  return parsePrometheus(text);
}

function value(families, name, labels = {}) {
  const f = families.find((x) => x.name === name);
  assert.ok(f, `family ${name} is present`);
  const m = f.metrics.find((s) => JSON.stringify(s.labels || {}) === JSON.stringify(labels));
  assert.ok(m, `${name} has a sample with labels ${JSON.stringify(labels)}`);
  return Number(m.value);
}

test('every family is a typed, documented counter or gauge with numeric samples', async () => {
  const families = await scrape();
  assert.ok(families.length >= 20, `${families.length} families`);
  for (const f of families) {
    assert.match(f.name, /^ocx_[a-z_]+$/, f.name);
    assert.ok(['COUNTER', 'GAUGE'].includes(f.type), `${f.name} has type ${f.type}`);
    assert.ok(f.help.length > 0, `${f.name} has HELP`);
    if (f.type === 'COUNTER') assert.match(f.name, /_total$/, `counter ${f.name} ends in _total`);
    for (const m of f.metrics) assert.ok(Number.isFinite(Number(m.value)), `${f.name} ${m.value}`);
  }
  assert.equal(value(families, 'ocx_shared_memory'), 1, 'counters live in shared memory');
});

test('counters move when events are appended', async () => {
  const before = await scrape();
  const stream = `nodemetrics-${process.pid}-${Date.now()}`;
  await client.query(
    `SELECT ocx.append($1, 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]')`,
    [stream]);
  await client.query(`SELECT ocx.append($1, 0, '{"type": "D", "data": {}}')`, [stream]).catch(() => {});
  const after = await scrape();
  // counters are cluster-wide: other tests may add to them, never subtract
  assert.ok(value(after, 'ocx_events_total') - value(before, 'ocx_events_total') >= 3, 'events_total moved by 3');
  assert.ok(value(after, 'ocx_appends_total') - value(before, 'ocx_appends_total') >= 1, 'appends_total moved');
  assert.ok(value(after, 'ocx_conflicts_total') - value(before, 'ocx_conflicts_total') >= 1, 'conflicts_total moved');
  assert.ok(value(after, 'ocx_log_position') >= value(before, 'ocx_log_position') + 3, 'log_position moved');
});

test('label values survive escaping', async () => {
  // a projection gauge carries the projection name as a label; names are
  // restricted by define_projection, so check the escaping function directly
  const { rows } = await client.query(
    `SELECT 'x{name="' || ocx._prometheus_escape($1, true) || '"} 1' || chr(10) AS line`, ['a"b\\c\nd']);
  const [f] = parsePrometheus(`# HELP x help\n# TYPE x gauge\n${rows[0].line}`);
  assert.equal(f.metrics[0].labels.name, 'a"b\\c\nd');
});
