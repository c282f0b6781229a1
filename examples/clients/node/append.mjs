// An app that appends with expected versions and retries on OX001, with
// node-postgres (npm pg).
//
// Accounts are streams "account-<n>".  A teller reads the stream, decides
// (a withdrawal only when the balance covers it, else a refusal) and appends
// at the version it read.  When another teller appended first, ocx.append
// raises OX001 and writes nothing; the teller reads again and decides again,
// on the same connection.  So the balance never goes below zero, however
// many tellers race, and every operation is recorded exactly once.
//
//   node append.mjs [--accounts 3] [--tellers 8] [--ops 25] [--pool 4]
//
// Connection settings come from the usual PGHOST, PGPORT, PGUSER,
// PGDATABASE (node-postgres reads them).
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { withClient, sleep } from './connection.mjs';

// Read the stream, let decide() turn its events into new ones, append them at
// the version read; on OX001 do it all again.  Returns the stream's version
// after the append and how many attempts it took.
export async function appendWithRetry(client, streamId, decide, { maxAttempts = 100, onConflict } = {}) {
  for (let attempt = 1; ; attempt++) {
    const { rows } = await client.query(
      'SELECT stream_version, event_id, type, data FROM ocx.read_stream($1)', [streamId]);
    const version = rows.length ? Number(rows.at(-1).stream_version) : 0;
    const events = decide(rows);
    if (events.length === 0) return { version, attempts: attempt };
    try {
      const r = await client.query('SELECT ocx.append($1, $2, $3::jsonb) AS version',
                                   [streamId, version, JSON.stringify(events)]);
      return { version: Number(r.rows[0].version), attempts: attempt };
    } catch (err) {
      if (err.code !== 'OX001' || attempt >= maxAttempts) throw err;
      // someone else appended first; nothing was written and the connection
      // is fine (no transaction to roll back: the append ran in autocommit)
      onConflict?.(err);
      await sleep(Math.random() * Math.min(attempt, 10));   // a little jitter
    }
  }
}

export function balance(events) {
  let b = 0;
  for (const e of events) {
    if (e.type === 'Deposited') b += e.data.amount;
    if (e.type === 'Withdrawn') b -= e.data.amount;
  }
  return b;
}

// One operation on an account.  The event id is chosen once, before the first
// attempt: an operation whose event is already in the stream (say, its append
// committed but the connection broke before the answer arrived) is not
// recorded again.
export function operation(kind, amount) {
  const id = randomUUID();
  return (events) => {
    if (events.some((e) => e.event_id === id)) return [];
    if (kind === 'deposit') return [{ id, type: 'Deposited', data: { amount } }];
    if (balance(events) >= amount) return [{ id, type: 'Withdrawn', data: { amount } }];
    return [{ id, type: 'WithdrawalRefused', data: { amount } }];
  };
}

// Tellers run concurrently on a pool of at most poolSize connections; each
// operation checks a client out, appends (with retries) and gives it back.
export async function runTellers(pool, { prefix = 'account', accounts = 3, tellers = 8, ops = 25 } = {}) {
  const stats = { operations: 0, conflicts: 0 };
  const onConflict = () => { stats.conflicts++; };
  await Promise.all(Array.from({ length: tellers }, async (_, t) => {
    for (let i = 0; i < ops; i++) {
      const stream = `${prefix}-${(t + i) % accounts}`;
      const op = operation(i % 3 === 0 ? 'deposit' : 'withdraw', 1 + ((t * 7 + i) % 3));
      await withClient(pool, (client) => appendWithRetry(client, stream, op, { onConflict }));
      stats.operations++;
    }
  }));
  return stats;
}

async function main() {
  const { values } = parseArgs({ options: {
    accounts: { type: 'string', default: '3' }, tellers: { type: 'string', default: '8' },
    ops: { type: 'string', default: '25' }, pool: { type: 'string', default: '4' },
    prefix: { type: 'string', default: 'account' },
  } });
  const pool = new pg.Pool({ max: Number(values.pool), application_name: 'ocx-example-app' });
  let connections = 0;
  pool.on('connect', () => { connections++; });
  const stats = await runTellers(pool, { prefix: values.prefix, accounts: Number(values.accounts),
                                         tellers: Number(values.tellers), ops: Number(values.ops) });
  await pool.end();
  console.log(JSON.stringify({ ...stats, connections }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => { console.error(err); process.exit(1); });
}
