#!/usr/bin/env python3
"""Append with expected versions and retry on OX001, with psycopg 3.

Tellers (threads, one connection each) deposit to and withdraw from accounts
("account-<n>" streams): read the stream, decide (a withdrawal only when the
balance covers it, else a refusal), append at the version read.  When another
teller appended first, ocx.append raises OX001 and writes nothing: read again,
decide again, on the same connection (an SQL error leaves it healthy).

    python3 append.py [--prefix account] [--accounts 3] [--tellers 6] [--ops 20]

Connection settings: PGHOST, PGPORT, PGUSER, PGDATABASE (libpq).  Prints a
JSON line {"operations": n, "conflicts": n}.
"""
import argparse, json, random, threading, time, uuid
import psycopg
from psycopg.types.json import Jsonb


def balance(events):
    b = 0
    for e in events:
        if e["type"] == "Deposited":
            b += e["data"]["amount"]
        elif e["type"] == "Withdrawn":
            b -= e["data"]["amount"]
    return b


def operation(kind, amount):
    """decide(events) for one operation; its event id is chosen once, so an
    operation already in the stream is not recorded again."""
    op_id = uuid.uuid4()

    def decide(events):
        if any(e["event_id"] == op_id for e in events):
            return []
        if kind == "deposit":
            return [{"id": str(op_id), "type": "Deposited", "data": {"amount": amount}}]
        t = "Withdrawn" if balance(events) >= amount else "WithdrawalRefused"
        return [{"id": str(op_id), "type": t, "data": {"amount": amount}}]
    return decide


def append_with_retry(conn, stream_id, decide, max_attempts=100, on_conflict=None):
    for attempt in range(1, max_attempts + 1):
        rows = conn.execute(
            "SELECT stream_version, event_id, type, data FROM ocx.read_stream(%s)",
            (stream_id,)).fetchall()
        events = [dict(zip(("stream_version", "event_id", "type", "data"), r)) for r in rows]
        version = events[-1]["stream_version"] if events else 0
        new = decide(events)
        if not new:
            return version
        try:
            return conn.execute("SELECT ocx.append(%s, %s, %s)",
                                (stream_id, version, Jsonb(new))).fetchone()[0]
        except psycopg.Error as e:
            if e.sqlstate != "OX001" or attempt == max_attempts:
                raise
            # someone appended first; autocommit: nothing to roll back
            if on_conflict:
                on_conflict()
            time.sleep(random.random() * min(attempt, 10) / 1000)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefix", default="account")
    ap.add_argument("--accounts", type=int, default=3)
    ap.add_argument("--tellers", type=int, default=6)
    ap.add_argument("--ops", type=int, default=20)
    args = ap.parse_args()
    stats = {"operations": 0, "conflicts": 0}
    lock = threading.Lock()

    def count(key):
        with lock:
            stats[key] += 1

    def teller(t):
        with psycopg.connect(autocommit=True, application_name="ocx-example-app") as conn:
            for i in range(args.ops):
                stream = f"{args.prefix}-{(t + i) % args.accounts}"
                kind = "deposit" if i % 3 == 0 else "withdraw"
                append_with_retry(conn, stream, operation(kind, 1 + (t * 7 + i) % 3),
                                  on_conflict=lambda: count("conflicts"))
                count("operations")

    threads = [threading.Thread(target=teller, args=(t,)) for t in range(args.tellers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
