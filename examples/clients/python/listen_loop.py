"""The loop of the worker and the subscriber, on a dedicated connection that
LISTENs: step(conn) does one round and returns how much it did; after an idle
round it waits for a NOTIFY (or half a second).  A connection that dies is
replaced, and the next round goes on from what the database says (claims
come back, the acknowledged cursor), never from what the process remembers."""
import select, signal, time
import psycopg
from psycopg import sql

stop = False


def _stop(*_):
    global stop
    stop = True


signal.signal(signal.SIGTERM, _stop)
signal.signal(signal.SIGINT, _stop)


def listen_loop(app_name, channel, step, idle_exit=0.0, retryable=lambda e: False):
    conn, reconnects, idle_since = None, 0, time.monotonic()
    while not stop:
        try:
            if conn is None:
                conn = psycopg.connect(autocommit=True, application_name=app_name)
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            if step(conn) > 0:
                idle_since = time.monotonic()
            else:
                if idle_exit and time.monotonic() - idle_since >= idle_exit:
                    break
                # a wake-up is only a hint: the next round reads after its cursor
                select.select([conn.fileno()], [], [], 0.5)
        except psycopg.Error as e:
            if conn is not None and not conn.broken and not conn.closed:
                if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    conn.rollback()
                if retryable(e):
                    continue
                raise
            if conn is not None:
                conn.close()
            conn = None
            reconnects += 1
            time.sleep(0.1)
    if conn is not None:
        conn.close()
    return reconnects
