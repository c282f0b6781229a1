#!/usr/bin/env python3
"""A command worker with psycopg 3: claims commands of its types, does the work
and completes each with its claim token in one transaction, so a command is
done exactly once.  A handler that raises fails the command (fail_command:
retried with backoff).  A lost claim (OX324) rolls the work back.  A killed
connection rolls the open transaction back; the worker reconnects and the
command comes back after its visibility timeout.

    python3 worker.py [--types example.SendReceipt] [--claimer NAME]
                      [--visibility '30 seconds'] [--idle-exit SECONDS]

The example's work: a stream receipt-<command id> created (expected version 0)
with one ReceiptSent event.  Prints a JSON line of counts when it stops.
"""
import argparse, json, os
import psycopg
from psycopg.types.json import Jsonb
from listen_loop import listen_loop


def handle(conn, cmd):
    if cmd["data"].get("flaky") and cmd["attempt"] == 1:
        raise RuntimeError("flaky on its first attempt")
    v = conn.execute("SELECT ocx.append_event(%s, 0, 'ReceiptSent', %s)",
                     (f"receipt-{cmd['command_id']}", Jsonb(cmd["data"]))).fetchone()[0]
    return {"receipt_version": v}


def run_one(conn, cmd, stats):
    try:
        with conn.transaction():
            # what the work appends carries the command's correlation and causation
            conn.execute("SELECT set_config('ocx.correlation_id', %s, true),"
                         " set_config('ocx.causation_id', %s, true)",
                         (str(cmd["correlation_id"]), str(cmd["command_id"])))
            result = handle(conn, cmd)
            conn.execute("SELECT ocx.complete_command(%s, %s, %s)",
                         (cmd["command_id"], Jsonb(result), cmd["claim_token"]))
        stats["completed"] += 1
    except psycopg.OperationalError:
        raise                                   # the connection is gone: reconnect
    except Exception as e:                      # the transaction was rolled back
        if isinstance(e, psycopg.Error) and e.sqlstate == "OX324":
            stats["claims_lost"] += 1           # no longer ours
            return
        stats["failed"] += 1
        try:
            conn.execute("SELECT ocx.fail_command(%s, %s, true, %s)",
                         (cmd["command_id"], f"{type(e).__name__}: {e}", cmd["claim_token"]))
        except psycopg.Error as e2:
            if e2.sqlstate != "OX324":
                raise
            stats["claims_lost"] += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="example.SendReceipt")
    ap.add_argument("--claimer", default=f"worker-{os.getpid()}")
    ap.add_argument("--visibility", default="30 seconds")
    ap.add_argument("--idle-exit", type=float, default=0)
    args = ap.parse_args()
    stats = {"completed": 0, "failed": 0, "claims_lost": 0}

    def step(conn):
        cur = conn.execute("SELECT * FROM ocx.claim_commands(%s, 3, %s::interval, %s)",
                           (args.types.split(","), args.visibility, args.claimer))
        names = [d.name for d in cur.description]
        cmds = [dict(zip(names, r)) for r in cur.fetchall()]
        for cmd in cmds:
            run_one(conn, cmd, stats)
        return len(cmds)

    stats["reconnects"] = listen_loop("ocx-example-worker", "ocx_commands", step, args.idle_exit)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
