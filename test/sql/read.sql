-- Reading: read_stream windows, read_all cursors and filters, read_category.
\set SHOW_CONTEXT never

SELECT ocx.append('rd_order-1', 0, '[{"type": "Placed", "data": {"i": 1}},
                                     {"type": "Paid", "data": {"i": 2}},
                                     {"type": "Shipped", "data": {"i": 3}}]');
SELECT ocx.append('rd_user-1', 0, '{"type": "Registered", "data": {"i": 4}}');
SELECT ocx.append('rd_order-2', 0, '{"type": "Placed", "data": {"i": 5}}');

SELECT stream_version, type FROM ocx.read_stream('rd_order-1', 2);
SELECT stream_version, type FROM ocx.read_stream('rd_order-1', 1, 2);
SELECT stream_version, type FROM ocx.read_stream('rd_order-1', 9);
SELECT count(*) AS missing FROM ocx.read_stream('rd_none-1');
SELECT count(*) AS zero_limit FROM ocx.read_stream('rd_order-1', 1, 0);

-- every row's cursor is its (txid, global_position)
SELECT bool_and(ocx.txid("cursor") = txid AND ocx.global_position("cursor") = global_position
                AND "cursor"::text = txid::text || '/' || global_position
                AND "cursor" OPERATOR(ocx.=) ocx.cursor(txid, global_position)
                AND ("cursor"::text)::ocx.cursor OPERATOR(ocx.=) "cursor") AS cursor_ok
  FROM ocx.read_stream('rd_order-1');
-- cursors sort in log order
SELECT array_agg(c ORDER BY c)::text[] AS sorted
  FROM unnest(ARRAY['10/5', '9/7', '10/2', '9/8']::ocx.cursor[]) c;
SELECT '5/3'::ocx.cursor OPERATOR(ocx.<) '6/1'::ocx.cursor AS lt, '5/3'::ocx.cursor OPERATOR(ocx.=) '5/3' AS eq;
-- every comparison operator, both ways and on equal cursors
SELECT a, b, a OPERATOR(ocx.<) b AS lt, a OPERATOR(ocx.<=) b AS le, a OPERATOR(ocx.=) b AS eq,
       a OPERATOR(ocx.<>) b AS ne, a OPERATOR(ocx.>=) b AS ge, a OPERATOR(ocx.>) b AS gt,
       ocx.cursor_cmp(a, b) AS cmp
  FROM (VALUES ('5/3'::ocx.cursor, '6/1'::ocx.cursor), ('6/1', '5/3'), ('5/3', '5/3'),
               ('5/3', '5/4'), ('5/4', '5/3')) v(a, b);
-- the binary form: 8 bytes of txid, 8 of position, and back through cursor_recv
-- (COPY in binary format), extreme values included
SELECT ocx.cursor_send('5/3'), ocx.cursor_send('18446744073709551615/9223372036854775807');
CREATE TEMP TABLE rd_cursors (c ocx.cursor);
INSERT INTO rd_cursors VALUES ('0/0'), ('5/3'), ('18446744073709551615/9223372036854775807');
SELECT '/tmp/ocx_regress_cursors_' || pg_backend_pid() || '.bin' AS rd_file \gset
COPY rd_cursors TO :'rd_file' (FORMAT binary);
CREATE TEMP TABLE rd_cursors_back (c ocx.cursor);
SELECT 'cat ' || :'rd_file' || ' && rm -f ' || :'rd_file' AS rd_cat \gset
COPY rd_cursors_back FROM PROGRAM :'rd_cat' (FORMAT binary);
SELECT b.c::text FROM rd_cursors_back b ORDER BY b.c;
SELECT (SELECT array_agg(c::text ORDER BY c) FROM rd_cursors)
     = (SELECT array_agg(c::text ORDER BY c) FROM rd_cursors_back) AS binary_round_trip;
-- malformed cursors are refused
SELECT 'abc'::ocx.cursor;
\echo :LAST_ERROR_SQLSTATE
SELECT '1/'::ocx.cursor;
\echo :LAST_ERROR_SQLSTATE
SELECT '1/99999999999999999999'::ocx.cursor;
\echo :LAST_ERROR_SQLSTATE

-- read_all in log order, paged with cursors
CREATE TEMP TABLE seen AS
  SELECT * FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rd_order', 'rd_user']);
SELECT stream_id, stream_version, type FROM seen ORDER BY txid, global_position;
SELECT bool_and(ok) AS log_order FROM (
  SELECT (txid, global_position) > (lag(txid) OVER w, lag(global_position) OVER w)
         OR lag(txid) OVER w IS NULL AS ok
    FROM seen WINDOW w AS (ORDER BY txid, global_position)) s;

-- paging: two at a time from the start until exhausted equals one full read
DO $$
DECLARE
    c ocx.cursor := NULL;
    n int := 0;
    total int := 0;
    r record;
BEGIN
    LOOP
        n := 0;
        FOR r IN SELECT * FROM ocx.read_all(c, 2, NULL, ARRAY['rd_order', 'rd_user']) LOOP
            c := r."cursor";
            n := n + 1;
        END LOOP;
        total := total + n;
        EXIT WHEN n = 0;
    END LOOP;
    RAISE NOTICE 'paged % events', total;
END $$;

-- type and category filters
SELECT stream_id, type FROM ocx.read_all(NULL, NULL, ARRAY['Placed'], ARRAY['rd_order']);
SELECT stream_id, type FROM ocx.read_category('rd_user');
SELECT count(*) AS after_last FROM ocx.read_category('rd_order',
    (SELECT "cursor" FROM seen ORDER BY txid DESC, global_position DESC LIMIT 1));

-- own uncommitted events are not in read_all yet (their txid is not below xmin)
BEGIN;
SELECT ocx.append('rd_tx-1', 0, '{"type": "Inside"}');
SELECT count(*) AS own_uncommitted_in_read_all FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rd_tx']);
SELECT count(*) AS own_in_read_stream FROM ocx.read_stream('rd_tx-1');
COMMIT;
SELECT count(*) AS after_commit FROM ocx.read_all(NULL, NULL, NULL, ARRAY['rd_tx']);

-- reads are inlined into the caller's query: no function scan, the right index
CREATE FUNCTION pg_temp.plan_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE l text; p text := '';
BEGIN
    FOR l IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP p := p || l || E'\n'; END LOOP;
    RETURN p;
END $$;
SELECT p NOT LIKE '%Function Scan%' AS inlined, p LIKE '%events_stream_version_key%' AS stream_index
  FROM pg_temp.plan_of($$SELECT * FROM ocx.read_stream('rd_order-1', 2, 10)$$) p;
SELECT p NOT LIKE '%Function Scan%' AS inlined, p LIKE '%events_log_order_idx%' AS log_order_index
  FROM pg_temp.plan_of($$SELECT * FROM ocx.read_all(NULL, 10)$$) p;
