#!/usr/bin/env bash
# Personal data (issue 14, docs/privacy.md), in one run:
#  - append of an event with 3 personal fields (encrypted under its subject's
#    key, 1,000 subjects) against the same event of a type without a
#    definition, 1 event/tx, 8 clients (target >= 0.8x);
#  - read_stream of 1,000 such events (3 fields decrypted per event, 10
#    subjects) against 1,000 unencrypted ones, the rows sent to the client
#    2 clients (target >= 0.7x); whole events, as 10_append.sh's read_stream;
#  - the bulk import of 20,000 such events (2,000 subjects) against the same
#    rows of a type without a definition (target >= 0.5x).
set -euo pipefail
. "$BENCH_DIR/lib.sh"

psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# the key-encryption key: a file of the server's user, mode 0600
datadir=$(psql -Atc 'SHOW data_directory')
kek="$BENCH_OUT/privacy_kek"
head -c 32 /dev/urandom > "$kek"
chmod 600 "$kek"
chown --reference="$datadir" "$kek"
chmod o+x "$BENCH_OUT" 2>/dev/null || true
psql -c "ALTER SYSTEM SET ocx.privacy_key_file = '$kek'" -c 'SELECT pg_reload_conf()' >/dev/null
sleep 1

psql <<'SQL' >/dev/null
SELECT ocx.define_personal_data('bench.PdCustomer', 'customer_id', '{email,name,address.street}');
SELECT ocx.append('pdread-enc', NULL, jsonb_agg(jsonb_build_object('type', 'bench.PdCustomer',
    'data', jsonb_build_object('customer_id', 'rc' || (i % 10), 'email', 'user' || i || '@example.com',
                               'name', 'Customer Number ' || i,
                               'address', jsonb_build_object('street', 'Long Street ' || i, 'city', 'Town')))))
  FROM generate_series(1, 1000) i;
SELECT ocx.append('pdread-plain', NULL, jsonb_agg(jsonb_build_object('type', 'bench.PlainCustomer',
    'data', jsonb_build_object('customer_id', 'rc' || (i % 10), 'email', 'user' || i || '@example.com',
                               'name', 'Customer Number ' || i,
                               'address', jsonb_build_object('street', 'Long Street ' || i, 'city', 'Town')))))
  FROM generate_series(1, 1000) i;
SQL
test "$(psql -Atc "SELECT count(*) FROM ocx.events WHERE stream_id = 'pdread-enc' AND data->>'email' LIKE 'ocx:pd1:%'")" = 1000

cat > "$BENCH_OUT/pd_append.sql" <<'SQL'
\set s random(1, 1000)
SELECT ocx.append('pdc-' || :s, NULL, jsonb_build_object('type', 'bench.PdCustomer',
    'data', jsonb_build_object('customer_id', 'c' || :s, 'email', 'someone' || :s || '@example.com',
                               'name', 'Some One', 'address', jsonb_build_object('street', 'Main Street 1', 'city', 'Town'))));
SQL
cat > "$BENCH_OUT/pd_append_plain.sql" <<'SQL'
\set s random(1, 1000)
SELECT ocx.append('pdp-' || :s, NULL, jsonb_build_object('type', 'bench.PlainCustomer',
    'data', jsonb_build_object('customer_id', 'c' || :s, 'email', 'someone' || :s || '@example.com',
                               'name', 'Some One', 'address', jsonb_build_object('street', 'Main Street 1', 'city', 'Town'))));
SQL
read -r o b < <(alt_tps "$BENCH_OUT/pd_append.sql" "$BENCH_OUT/pd_append_plain.sql" 8 3)
row "append of an event with 3 personal fields vs the same event without, 1 event/tx, 8 clients (tx/s)" "$o" "$b" 0.8

cat > "$BENCH_OUT/pd_read.sql" <<'SQL'
SELECT * FROM ocx.read_stream('pdread-enc');
SQL
cat > "$BENCH_OUT/pd_read_plain.sql" <<'SQL'
SELECT * FROM ocx.read_stream('pdread-plain');
SQL
read -r o b < <(alt_tps "$BENCH_OUT/pd_read.sql" "$BENCH_OUT/pd_read_plain.sql" 2 3)
row "read_stream of 1,000 events with 3 personal fields each vs unencrypted (reads/s)" "$o" "$b" 0.7

# the bulk import of 20,000 such events (2,000 subjects, 2,000 streams of 10)
# against the same rows of a type without a definition: each in one
# transaction that rolls back, 3 alternating rounds (events/s)
N=20000
import_rate() {   # type
    local t0 t1 n
    t0=$(date +%s.%N)
    n=$(psql -At <<SQL | tail -n1
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data)
SELECT 'pdimp-' || (g / 10), ((g % 10) + 1)::text, '$1',
       jsonb_build_object('customer_id', 'ic' || (g / 10), 'email', 'user' || g || '@example.com',
                          'name', 'Customer Number ' || g,
                          'address', jsonb_build_object('street', 'Long Street ' || g, 'city', 'Town'))::text
  FROM generate_series(0, $N - 1) g;
SELECT events FROM ocx.import_commit();
ROLLBACK;
SQL
)
    t1=$(date +%s.%N)
    [ "$n" = "$N" ] || { echo "bench: the import of $1 wrote '$n' events, not $N" >&2; echo 0; return 1; }
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f\n", n / (b - a) }'
}
la="" lb=""
for i in 1 2 3; do
    if [ $((i % 2)) -eq 1 ]; then a=$(import_rate bench.PdCustomer); b=$(import_rate bench.PlainCustomer)
    else b=$(import_rate bench.PlainCustomer); a=$(import_rate bench.PdCustomer); fi
    la="$la $a"; lb="$lb $b"
done
spread_rounds "$la" "$lb"
row "import of 20,000 events with 3 personal fields (2,000 subjects) vs the same events without (events/s)" \
    "$(echo "$la" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF }')" \
    "$(echo "$lb" | awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; print s / NF }')" 0.5

psql -c 'ALTER SYSTEM RESET ocx.privacy_key_file' -c 'SELECT pg_reload_conf()' >/dev/null
