// A durable subscriber with node-postgres: LISTENs for wake-ups, polls,
// handles, acks, and survives its connection being killed without losing or
// repeating an event.
//
//   node subscriber.mjs [--subscription example_receipts] [--category receipt] [--idle-exit 0]
//
// How it gets exactly once: the handler's writes and the ack commit in one
// transaction (BEGIN; poll; handle; ack; COMMIT).  If the connection dies
// anywhere in between, all of it rolls back, and the events come back on the
// next poll after the reconnect; if the COMMIT went through, the ack did too,
// and the next poll starts after them.  A handler whose effects are outside
// this database cannot commit with the ack: make it idempotent by event_id.
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { listenLoop, openClient } from './connection.mjs';

// One batch: returns how many events were handled and acknowledged.
async function drainOnce(client, { subscription, consumer, batch, handle }) {
  await client.query('BEGIN');
  const { rows } = await client.query('SELECT * FROM ocx.poll($1, $2, $3)',
                                      [subscription, batch, consumer]);
  for (const event of rows) await handle(client, event);
  if (rows.length > 0) {
    await client.query('SELECT ocx.ack($1, $2::ocx.cursor, $3)',
                       [subscription, rows.at(-1).cursor, consumer]);
  }
  await client.query('COMMIT');
  return rows.length;
}

export async function runSubscriber({ connect = {}, subscription, consumer = 'default', channel = 'ocx_events',
                                      handle, batch = 100, idleExitMs = 0, signal } = {}) {
  const stats = { handled: 0, batches: 0, reconnects: 0 };
  stats.reconnects = await listenLoop({
    connect: { application_name: 'ocx-example-subscriber', ...connect },
    channel, idleExitMs, signal,
    // lease lost (OX303): nothing was acknowledged; poll again and the events come back
    retryable: (err) => err.code === 'OX303',
    step: async (client) => {
      const n = await drainOnce(client, { subscription, consumer, batch, handle });
      if (n > 0) { stats.handled += n; stats.batches++; }
      return n;
    },
  });
  return stats;
}

async function main() {
  const { values } = parseArgs({ options: {
    subscription: { type: 'string', default: 'example_receipts' },
    category: { type: 'string', default: 'receipt' },
    consumer: { type: 'string', default: 'default' },
    'idle-exit': { type: 'string', default: '0' },
  } });
  const ac = new AbortController();
  process.on('SIGTERM', () => ac.abort());
  process.on('SIGINT', () => ac.abort());
  const setup = await openClient({});
  await setup.query('SELECT ocx.define_subscription($1, categories => ARRAY[$2])',
                    [values.subscription, values.category]);
  await setup.query(`CREATE TABLE IF NOT EXISTS example_handled
                       (subscription text, event_id uuid, stream_id text, global_position bigint,
                        handled_at timestamptz DEFAULT now())`);
  await setup.end();
  // the example's handler: a row per event, in the transaction that acks it
  const handle = (client, e) => client.query(
    'INSERT INTO example_handled (subscription, event_id, stream_id, global_position) VALUES ($1, $2, $3, $4)',
    [values.subscription, e.event_id, e.stream_id, e.global_position]);
  const stats = await runSubscriber({ subscription: values.subscription, consumer: values.consumer,
                                      channel: `ocx_${values.category}`, handle,
                                      idleExitMs: Number(values['idle-exit']) * 1000, signal: ac.signal });
  console.log(JSON.stringify(stats));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => { console.error(err); process.exit(1); });
}
