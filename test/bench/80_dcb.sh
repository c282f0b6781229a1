#!/usr/bin/env bash
# ocx.append_if with a 2-tag condition against ocx.append with an expected
# version (issue 13's target: >= 0.7x), 8 clients.  Both write one event
# into a new stream per transaction (a subscription of a student to a
# course); append_if's condition is "no Subscribed event tagged with both
# this course and this student yet", the DCB form of the uniqueness check
# that the baseline gets from expected version 0.  Tags are drawn from
# 10,000 courses and 10 million students (a repeated pair, which would fail with OX014 and abort a pgbench client, is unlikely), so their posting lists grow during
# the run as a real boundary's do.
set -euo pipefail
. "$BENCH_DIR/lib.sh"

cat > "$BENCH_OUT/dcb_if.sql" <<'SQL'
\set c random(1, 10000)
\set s random(1, 10000000)
SELECT ocx.append_if(
    jsonb_build_array(jsonb_build_object('stream_id', 'dcbsub-' || :c || '-' || :s || '-' || random(),
        'type', 'Subscribed', 'data', jsonb_build_object('course', :c, 'student', :s),
        'tags', jsonb_build_array('course:' || :c, 'student:' || :s))),
    jsonb_build_object('tags', jsonb_build_array('course:' || :c, 'student:' || :s),
                       'types', jsonb_build_array('Subscribed')));
SQL
cat > "$BENCH_OUT/dcb_append.sql" <<'SQL'
\set c random(1, 10000)
\set s random(1, 10000000)
SELECT ocx.append('dcbver-' || :c || '-' || :s || '-' || random(), 0,
    jsonb_build_object('type', 'Subscribed', 'data', jsonb_build_object('course', :c, 'student', :s)));
SQL
read -r o b < <(alt_tps "$BENCH_OUT/dcb_if.sql" "$BENCH_OUT/dcb_append.sql" 8 3)
row "append_if with a 2-tag condition vs append with expected version 0, 1 event/tx, 8 clients (tx/s)" "$o" "$b" 0.7
