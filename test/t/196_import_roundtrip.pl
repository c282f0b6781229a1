# Bulk import and export (issue 16, docs/migrating.md): 200,000 events written
# by appends (single events and batches, several sources, tags, metadata,
# correlation and causation ids, schema versions, a contract), exported with
# ocx.export() to newline-delimited CloudEvents through COPY TO in pages
# resumed by cursor, imported with ocx.import_begin / COPY FROM /
# ocx.import_commit into a fresh database on another cluster: every row is
# the same (stream, version, id, source, type, schema version, time, data,
# metadata, correlation, causation, tags, hash), in the same log order, and
# ocx.verify() is clean on both.  Importing the export a second time writes
# nothing (idempotent).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $events = $ENV{OCX_ROUNDTRIP_EVENTS} // 200000;

my $src = PostgreSQL::Test::Cluster->new('export_source');
$src->init;
$src->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\n");
$src->start;
my $dst = PostgreSQL::Test::Cluster->new('import_target');
$dst->init;
$dst->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\n");
$dst->start;
$_->safe_psql('postgres', 'CREATE EXTENSION ocx') for ($src, $dst);

# the source log: batches of 10 events to 2,000 streams, every field varied
my $batches = $events / 10;
$src->safe_psql('postgres', qq{
SELECT ocx.define_event_type('rt.Opened', 2, '{"type": "object", "required": ["n"]}');
DO \$\$
DECLARE
    b int;
BEGIN
    FOR b IN 0 .. $batches - 1 LOOP
        PERFORM ocx.append('rt-' || (b % 2000), NULL, (
            SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                       'type', CASE WHEN i = 0 AND b < 2000 THEN 'rt.Opened' ELSE 'Moved' END,
                       'data', jsonb_build_object('n', b * 10 + i, 'text', repeat('x', i), 'f', 1.5, 'u', 'é\\"\\n'),
                       'metadata', CASE WHEN i % 3 = 0 THEN jsonb_build_object('who', 'u' || i, 'nested', jsonb_build_object('a', i)) END,
                       'source', CASE WHEN i % 2 = 0 THEN '/a' ELSE '/b' END,
                       'correlation_id', CASE WHEN i % 4 = 0 THEN gen_random_uuid()::text END,
                       'causation_id', CASE WHEN i % 5 = 0 THEN gen_random_uuid()::text END,
                       'tags', CASE WHEN i % 7 = 0 THEN jsonb_build_array('t' || (b % 13), 'x') END,
                       'time', CASE WHEN i = 9 THEN '2020-02-02T02:02:02.123456Z' END,
                       'schema_version', CASE WHEN i = 8 THEN 1 END))
                     ORDER BY i)
              FROM generate_series(0, 9) i));
        IF b % 1000 = 999 THEN COMMIT; END IF;
    END LOOP;
END
\$\$;
});
is($src->safe_psql('postgres', 'SELECT count(*) FROM ocx.events'), $events, "the source holds $events events");
is($src->safe_psql('postgres', 'SELECT count(*) FROM ocx.verify()'), '0', 'the source verifies');

# export in pages of 50,000 resumed after the last cursor, as NDJSON
my $file = $src->basedir . '/export.ndjson';
unlink $file;
my $after = '';
my $pages = 0;
while (1) {
    my $arg = $after eq '' ? 'NULL' : "'$after'";
    my $last = $src->safe_psql('postgres',
        "SELECT x.\"cursor\"::text FROM ocx.export(after => $arg, max_count => 50000) x ORDER BY x.\"cursor\" DESC LIMIT 1");
    last if $last eq '';
    $src->safe_psql('postgres', qq{COPY (SELECT cloudevent FROM ocx.export(after => $arg, max_count => 50000))
        TO PROGRAM 'cat >> $file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')});
    $after = $last;
    $pages++;
}
is($pages, int(($events + 49999) / 50000), 'the export came in pages resumed by cursor');
my $lines = 0;
open(my $fh, '<', $file) or die "open $file: $!";
while (my $l = <$fh>) {
    $lines++;
    die "line $lines is not one JSON object: $l" unless $l =~ /^\{.*\}\n\z/;
}
close $fh;
is($lines, $events, 'one CloudEvent per line');

# import into the fresh database
my $import = qq{
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (cloudevent) FROM '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
SELECT events, skipped, streams FROM ocx.import_commit();
COMMIT;
};
$dst->safe_psql('postgres', q{SELECT ocx.define_event_type('rt.Opened', 2, '{"type": "object", "required": ["n"]}')});
like($dst->safe_psql('postgres', $import), qr/^$events\|0\|2000$/m, 'the import wrote every event to 2,000 streams');
is($dst->safe_psql('postgres', 'SELECT count(*) FROM ocx.verify()'), '0', 'the imported log verifies');

# every row, in log order
my $cols = 'stream_id, stream_version, event_id, source, type, schema_version, '
  . "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), data::text, metadata::text, "
  . 'correlation_id, causation_id, tags::text, encode(hash, \'hex\')';
my $dump = "COPY (SELECT $cols FROM ocx.events ORDER BY txid, global_position) TO STDOUT";
my $a = $src->safe_psql('postgres', $dump);
my $b = $dst->safe_psql('postgres', $dump);
is(length($b), length($a), 'the two logs have the same size');
my @la = split /\n/, $a;
my @lb = split /\n/, $b;
my $diff = 0;
for my $i (0 .. $#la) {
    next if defined $lb[$i] && $la[$i] eq $lb[$i];
    diag("first difference at event " . ($i + 1) . ":\n  $la[$i]\n  " . ($lb[$i] // '(none)')) unless $diff;
    $diff++;
}
is($diff, 0, 'every event is the same, in the same log order');
is($dst->safe_psql('postgres', 'SELECT string_agg(stream_id || \':\' || version || \':\' || encode(head, \'hex\'), \',\' ORDER BY stream_id) FROM ocx.streams'),
   $src->safe_psql('postgres', 'SELECT string_agg(stream_id || \':\' || version || \':\' || encode(head, \'hex\'), \',\' ORDER BY stream_id) FROM ocx.streams'),
   'the same streams, versions and heads');

# a second import of the same export writes nothing
like($dst->safe_psql('postgres', $import), qr/^0\|$events\|0$/m, 'importing it again skips every event');
is($dst->safe_psql('postgres', 'SELECT count(*) FROM ocx.events'), $events, 'and writes nothing');

$src->stop;
$dst->stop;
done_testing();
