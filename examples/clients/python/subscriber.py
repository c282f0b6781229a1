#!/usr/bin/env python3
"""A durable subscriber with psycopg 3: LISTENs, polls, handles, acks, and
survives its connection being killed without losing or repeating an event.
The handler's writes and the ack commit in one transaction (BEGIN; poll;
handle; ack; COMMIT): a connection that dies anywhere in between rolls all of
it back and the events come again after the reconnect; a COMMIT that went
through took the ack with it.  (Effects outside the database cannot commit
with the ack: make them idempotent by event_id.)

    python3 subscriber.py [--subscription example_receipts] [--category receipt]
                          [--idle-exit SECONDS] [--work-ms MS]

The example's handler inserts a row per event into example_handled.  Prints a
JSON line of counts when it stops.
"""
import argparse, json, time
import psycopg
from listen_loop import listen_loop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscription", default="example_receipts")
    ap.add_argument("--category", default="receipt")
    ap.add_argument("--consumer", default="default")
    ap.add_argument("--idle-exit", type=float, default=0)
    ap.add_argument("--work-ms", type=float, default=0, help="time each event's handling takes")
    args = ap.parse_args()
    with psycopg.connect(autocommit=True) as conn:
        conn.execute("SELECT ocx.define_subscription(%s, categories => ARRAY[%s])",
                     (args.subscription, args.category))
        conn.execute("CREATE TABLE IF NOT EXISTS example_handled (subscription text, event_id uuid,"
                     " stream_id text, global_position bigint, handled_at timestamptz DEFAULT now())")
    stats = {"handled": 0, "batches": 0}

    def step(conn):
        with conn.transaction():
            cur = conn.execute("SELECT event_id, stream_id, global_position, \"cursor\"::text"
                               " FROM ocx.poll(%s, 20, %s)", (args.subscription, args.consumer))
            rows = cur.fetchall()
            for event_id, stream_id, position, _ in rows:
                conn.execute("INSERT INTO example_handled (subscription, event_id, stream_id,"
                             " global_position) VALUES (%s, %s, %s, %s)",
                             (args.subscription, event_id, stream_id, position))
                time.sleep(args.work_ms / 1000)
            if rows:
                conn.execute("SELECT ocx.ack(%s, %s::ocx.cursor, %s)",
                             (args.subscription, rows[-1][3], args.consumer))
        if rows:
            stats["handled"] += len(rows)
            stats["batches"] += 1
        return len(rows)

    # lease lost (OX303): nothing was acknowledged; poll again
    stats["reconnects"] = listen_loop("ocx-example-subscriber", f"ocx_{args.category}", step,
                                      args.idle_exit, retryable=lambda e: e.sqlstate == "OX303")
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
