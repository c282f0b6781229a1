-- Projection batches read through the one reader with their categories and
-- partition (src/reader.c): only the events a batch applies come back, and a
-- batch that is not full moves its checkpoint to the last event below the
-- read's horizon, past the events the projection does not want.  A rare
-- category among more than two batches (ocx.batch_size 1000) of others:
-- every rare event applied once, in order per stream, and every checkpoint
-- (each partition's) at the tail of the log.  Streams here are "prr-*",
-- "prx-*".
\set SHOW_CONTEXT never
\set VERBOSITY terse

CREATE TABLE pr_model (projection text, stream_id text, version bigint, pos bigint);
CREATE FUNCTION pr_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pr_model VALUES (current_setting('pr.projection', true), e.stream_id, e.stream_version,
                                 e.global_position);
END $$;
CREATE FUNCTION pr_handler_parts(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pr_model VALUES ('pr_parts', e.stream_id, e.stream_version, e.global_position);
END $$;
-- Wait (deadline 30 s) until every checkpoint of the projection is at or
-- past the cursor.
CREATE FUNCTION pr_wait(p text, c ocx.cursor) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + interval '30 seconds';
BEGIN
    LOOP
        EXIT WHEN (SELECT s.checkpoint OPERATOR(ocx.>=) c AND s.lag_events = 0
                     FROM ocx.projection_status s WHERE s.name = p);
        IF clock_timestamp() > deadline THEN
            RETURN 'timed out at ' || (SELECT s.checkpoint::text FROM ocx.projection_status s WHERE s.name = p);
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN 'at the tail';
END $$;

-- the events the reader hands to projection batches, counted from here
CREATE TEMP TABLE pr_before AS SELECT value FROM ocx.stats WHERE name = 'projection_events_read';
SELECT ocx.define_projection('pr_rare', 'pr_handler(ocx.event)', categories => '{prr}');
SELECT ocx.define_projection('pr_parts', 'pr_handler_parts(ocx.event)', categories => '{prr}', partitions => 3);
SELECT count(*) FROM (
    SELECT ocx.append_event('prr-' || (i % 4), NULL, 'Rare', '{}') FROM generate_series(1, 8) i) a;
SELECT count(*) FROM (
    SELECT ocx.append_event('prx-' || (i % 50), NULL, 'Other', '{}') FROM generate_series(1, 2500) i) a;
SELECT count(*) FROM (
    SELECT ocx.append_event('prr-' || (i % 4), NULL, 'Rare', '{}') FROM generate_series(1, 4) i) a;
SELECT count(*) FROM (
    SELECT ocx.append_event('prx-' || (i % 50), NULL, 'Other', '{}') FROM generate_series(1, 1200) i) a;
SELECT ocx.cursor(txid, global_position) AS last_other FROM ocx.events
 WHERE stream_id LIKE 'prx-%' ORDER BY txid DESC, global_position DESC LIMIT 1 \gset
SELECT pr_wait('pr_rare', :'last_other');
SELECT pr_wait('pr_parts', :'last_other');
-- every partition's checkpoint is at the tail too
SELECT count(*) AS partitions_at_the_tail FROM ocx.projection_partitions
 WHERE projection = 'pr_parts' AND ocx.cursor(checkpoint_txid, checkpoint_position) OPERATOR(ocx.>=) :'last_other';
-- each rare event once per projection, no other event; in order per stream
SELECT coalesce(projection, 'pr_rare') AS projection, count(*) AS applied,
       count(DISTINCT (stream_id, version)) AS distinct_events,
       count(*) FILTER (WHERE stream_id NOT LIKE 'prr-%') AS others
  FROM pr_model GROUP BY 1 ORDER BY 1;
SELECT coalesce(projection, 'pr_rare') AS projection, stream_id,
       array_agg(version ORDER BY pos) = array_agg(version ORDER BY version) AS in_order
  FROM pr_model GROUP BY 1, 2 ORDER BY 1, 2;
SELECT name, events_applied, lag_events FROM ocx.projection_status WHERE name LIKE 'pr\_%' ORDER BY name;
-- the batches were handed the rare events only (24 applied, 12 per projection),
-- never the 3,700 others nor the log of the earlier tests: the filter is in the
-- reader, not after it (a few more if a batch was rolled back and read again)
SELECT s.value - b.value BETWEEN 24 AND 100 AS only_rare_events_read
  FROM ocx.stats s, pr_before b WHERE s.name = 'projection_events_read';

SELECT ocx.drop_projection('pr_rare');
SELECT ocx.drop_projection('pr_parts');
DROP TABLE pr_model;
DROP FUNCTION pr_handler(ocx.event), pr_handler_parts(ocx.event), pr_wait(text, ocx.cursor);
