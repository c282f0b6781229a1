-- The ocx tour, part 3: replay and inspect.
\pset footer off
\echo '== 3. Replay: fold each account''s stream into its balance'
SELECT stream_id,
       max(stream_version) AS version,
       sum(CASE type WHEN 'Deposited' THEN (data->>'amount')::numeric
                     WHEN 'Withdrawn' THEN -(data->>'amount')::numeric
                     ELSE 0 END) AS balance
  FROM ocx.read_category('account', NULL, NULL)
 GROUP BY stream_id ORDER BY stream_id;

\echo '== 4. The log, in gap-free log order (the order projections and subscribers see)'
SELECT global_position AS pos, "cursor", stream_id, stream_version AS v, type, data
  FROM ocx.read_all(NULL, NULL);

\echo '== 5. One event as a CloudEvent'
SELECT jsonb_pretty(ocx.to_cloudevent(e)) AS cloudevent
  FROM ocx.read_stream('account-alice', 3, 1) e;
