// A command worker with node-postgres: claims commands of its types, handles
// each, and completes it with its claim token, in one transaction with the
// work, so that a command is done exactly once.
//
//   node worker.mjs [--types example.SendReceipt] [--claimer worker-1] [--idle-exit 0]
//
// A handler that throws fails the command (fail_command: retried with backoff,
// dead letter after the last attempt).  A claim that ran out (another worker
// took the command over) is OX324 at completion: the work rolls back with it.
// When the connection is killed, the open transaction rolls back too; the
// worker reconnects, and the command comes back after its visibility timeout.
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { listenLoop, recover } from './connection.mjs';

// Handle one claimed command: the work and complete_command commit together.
async function runOne(client, cmd, handle, stats) {
  try {
    await client.query('BEGIN');
    // what the handler appends carries the command's correlation and causation
    await client.query(`SELECT set_config('ocx.correlation_id', $1, true),
                               set_config('ocx.causation_id', $2, true)`,
                       [cmd.correlation_id, cmd.command_id]);
    const result = await handle(client, cmd);
    await client.query('SELECT ocx.complete_command($1, $2::jsonb, $3)',
                       [cmd.command_id, JSON.stringify(result ?? null), cmd.claim_token]);
    await client.query('COMMIT');
    stats.completed++;
  } catch (err) {
    if (!(await recover(client))) throw err;          // connection gone: reconnect
    if (err.code === 'OX324') { stats.claimsLost++; return; }   // no longer ours
    stats.failed++;
    try {
      await client.query('SELECT ocx.fail_command($1, $2, true, $3)',
                         [cmd.command_id, `${err.code ?? 'handler'}: ${err.message}`, cmd.claim_token]);
    } catch (err2) {
      if (!(await recover(client))) throw err2;
      if (err2.code !== 'OX324') throw err2;
      stats.claimsLost++;
    }
  }
}

// Run until signal aborts (or, with idleExitMs, until nothing came for that
// long).  connect: node-postgres client settings; handle(client, command)
// returns the command's result (stored as jsonb).
export async function runCommandWorker({ connect = {}, types, claimer, handle, batch = 10,
                                         visibility = '30 seconds', idleExitMs = 0, signal } = {}) {
  const stats = { completed: 0, failed: 0, claimsLost: 0, reconnects: 0 };
  stats.reconnects = await listenLoop({
    connect: { application_name: 'ocx-example-worker', ...connect },
    channel: 'ocx_commands', idleExitMs, signal,
    step: async (client) => {
      const { rows } = await client.query(
        'SELECT * FROM ocx.claim_commands($1::text[], $2, $3::interval, $4)',
        [types, batch, visibility, claimer]);
      for (const cmd of rows) await runOne(client, cmd, handle, stats);
      return rows.length;
    },
  });
  return stats;
}

async function main() {
  const { values } = parseArgs({ options: {
    types: { type: 'string', default: 'example.SendReceipt' },
    claimer: { type: 'string', default: `worker-${process.pid}` },
    'idle-exit': { type: 'string', default: '0' },
  } });
  const ac = new AbortController();
  process.on('SIGTERM', () => ac.abort());
  process.on('SIGINT', () => ac.abort());
  // the example's work: a receipt stream per command, created exactly once
  const handle = async (client, cmd) => {
    const r = await client.query(`SELECT ocx.append_event($1, 0, 'ReceiptSent', $2::jsonb) AS v`,
                                 [`receipt-${cmd.command_id}`, JSON.stringify(cmd.data)]);
    return { receipt_version: Number(r.rows[0].v) };
  };
  const stats = await runCommandWorker({ types: values.types.split(','), claimer: values.claimer,
                                         handle, idleExitMs: Number(values['idle-exit']) * 1000,
                                         signal: ac.signal });
  console.log(JSON.stringify(stats));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => { console.error(err); process.exit(1); });
}
