// Connection handling shared by the node-postgres examples.
//
// The one rule: an SQL error (OX001, OX324, a constraint ...) leaves the
// connection healthy.  Roll the transaction back and keep using the client.
// Only a connection that no longer answers (killed with pg_terminate_backend,
// server restart, network) is thrown away and replaced.
import pg from 'pg';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// After an error: end the transaction, if any, and tell whether the client
// still works.  ROLLBACK outside a transaction is only a WARNING, so this is
// safe whether or not a transaction was open.
export async function recover(client) {
  try {
    await client.query('ROLLBACK');
    return true;
  } catch {
    return false;
  }
}

// Check a client out of the pool, run fn(client), give the client back.
//
// pool.query() is the wrong tool where SQL errors are expected: it releases
// its client with the error (client.release(err)), which makes pg-pool
// destroy the connection, so every OX001 costs a new connection (a fork of a
// backend, authentication, ~50 ms under load).  Here the client goes back to
// the pool after an SQL error, and is destroyed only when it no longer works.
export async function withClient(pool, fn) {
  const client = await pool.connect();
  let broken;
  try {
    return await fn(client);
  } catch (err) {
    if (!(await recover(client))) broken = err;
    throw err;
  } finally {
    client.release(broken);   // release(err) destroys the connection
  }
}

// A dedicated client (for LISTEN, which a pooled client cannot keep) that does
// not crash the process when its connection is killed while idle: node-postgres
// emits 'error' on the client then, and an 'error' without a listener is fatal.
export async function openClient(config) {
  const client = new pg.Client(config);
  client.on('error', () => {});   // the next query fails and the caller reconnects
  await client.connect();
  return client;
}

export async function closeQuietly(client) {
  if (client) await client.end().catch(() => {});
}

// Wait until a notification arrives on client, its connection ends, or ms
// pass.  A NOTIFY is only a hint to look now: the caller always reads after
// its own cursor, so a missed one costs at most ms of latency.
export function wakeUp(client, ms, signal) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('notification', done);
      client.off('end', done);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.on('notification', done);
    client.on('end', done);
    signal?.addEventListener('abort', done);
  });
}

// The loop of a worker or subscriber, on a dedicated connection that LISTENs
// on channel: step(client) does one round of work and returns how much it
// did; after a round that did nothing, wait for a wake-up (or 500 ms).  An
// SQL error the step did not handle ends the loop with that error, except
// those retryable(err) accepts: then the next round begins.  A connection
// that dies is replaced: the new one LISTENs again and the next round goes on
// from what the database says (a claim that comes back, the acknowledged
// cursor), never from what the process remembers.  Runs until signal aborts
// or, with idleExitMs, until nothing was done for that long; returns how many
// times it reconnected.
export async function listenLoop({ connect, channel, step, retryable = () => false, idleExitMs = 0, signal }) {
  let client = null;
  let reconnects = 0;
  let idleSince = Date.now();
  try {
    while (!signal?.aborted) {
      try {
        if (!client) {
          client = await openClient(connect);
          // LISTEN before the first round: nothing committed after it is missed
          await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
        }
        if ((await step(client)) > 0) {
          idleSince = Date.now();
        } else {
          if (idleExitMs && Date.now() - idleSince >= idleExitMs) break;
          await wakeUp(client, 500, signal);
        }
      } catch (err) {
        if (client && (await recover(client))) {
          if (!retryable(err)) throw err;
          continue;
        }
        await closeQuietly(client);
        client = null;
        reconnects++;
        await sleep(100);
      }
    }
  } finally {
    await closeQuietly(client);
  }
  return reconnects;
}
