# Differential test of the archive (ocx.archive on a partitioned log): the
# reads of a log of 1,200 seeded random events, taken before the oldest
# partitions move to ocx_archive.events, are the reads with
# include_archived => true after the move (read_stream forward and
# backward, read_category, read_all, ocx.load); without it the stream reads
# are the same reads less the archived events (and a load says its events
# are archived); appends go on and ocx.verify() is clean.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;

my $seed = fuzz_seed();

my $node = PostgreSQL::Test::Cluster->new('archive_differential');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
SELECT ocx.partition_log(100, 20);
CREATE FUNCTION acc_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql AS $$
    SELECT state || jsonb_build_object('sum', coalesce((state->>'sum')::numeric, 0) + coalesce((e.data->>'n')::numeric, 0),
                                       'last', e.stream_version)
$$;
SELECT ocx.define_aggregate('arc', 'acc_apply(jsonb, ocx.event)', '{}');
});


my $written = 0;
my $sql = '';
while ($written < 1200)
{
	my $n = pick(1, 1, 2, 5);
	my $stream = pick('arc', 'arc', 'other') . '-' . int(rand(20));
	# (every third batch tagged: the export carries tags from the archive too)
	my $tags = $written % 3 == 0 ? ', "tags": ["k' . ($written % 7) . '"]' : '';
	$sql .= "SELECT ocx.append('$stream', NULL, '["
	  . join(', ', map { '{"type": "' . pick('A', 'B') . '", "data": {"n": ' . int(rand(100)) . "}$tags}" } 1 .. $n) . "]');\n";
	$written += $n;
}
$node->safe_psql('postgres', $sql);

my @reads = (
	(map { "SELECT string_agg(format('%s/%s %s', stream_id, stream_version, data), ',') FROM ocx.read_stream('arc-$_', include_archived => ARCHIVED)" } 0 .. 19),
	(map { "SELECT string_agg(format('%s/%s', stream_id, stream_version), ',') FROM ocx.read_stream('arc-$_', 3, 5, 'backward', include_archived => ARCHIVED)" } 0 .. 4),
	"SELECT string_agg(format('%s/%s', stream_id, stream_version), ',') FROM ocx.read_category('arc', max_count => 100000, include_archived => ARCHIVED)",
	"SELECT string_agg(format('%s/%s', stream_id, stream_version), ',') FROM ocx.read_all(max_count => 100000, include_archived => ARCHIVED)",
	(map { "SELECT format('%s v%s', l.state, l.version) FROM ocx.load('arc', 'arc-$_', include_archived => ARCHIVED) l" } 0 .. 9),
);
sub take
{
	my ($archived) = @_;
	return [
		map {
			my ($rc, $out, $err) = $node->psql('postgres', s/ARCHIVED/$archived/r);
			$rc == 0 ? $out : 'ERROR ' . ($err =~ /ERROR:\s+(.*)/ ? $1 : $err);
		} @reads
	];
}
my $before = take('true');
is_deeply(take('false'), $before, 'before the archive, the reads with and without the archive are the same');

# archive the partitions wholly before the 700th event
my $cut = $node->safe_psql('postgres', q{
SELECT ocx.cursor(txid, global_position)::text FROM ocx.events ORDER BY txid, global_position OFFSET 700 LIMIT 1});
# (the seals gate the archive too: seal first, in a transaction of its own)
$node->safe_psql('postgres', q{SELECT ocx.seal()});
my $moved = $node->safe_psql('postgres', qq{SELECT ocx.archive('$cut')});
cmp_ok($moved, '>=', 5, "ocx.archive moved $moved partitions");
my $archived = $node->safe_psql('postgres', q{SELECT count(*) FROM ocx_archive.events});
cmp_ok($archived, '>=', 500, "$archived events are in the archive");

is_deeply(take('true'), $before, 'after it, every read with include_archived => true is what it was');
my $live = take('false');
my @fewer = grep { ($live->[$_] // '') ne ($before->[$_] // '') } 0 .. $#reads;
cmp_ok(scalar(@fewer), '>', 0, 'without the archive some reads are shorter');
like($live->[-1], qr/^ERROR events of stream "arc-9" from version 1 on are archived/,
	'and a load without the archive says its events are archived (no snapshot covers them)');
# a live read is the full read less the archived events
my %in_archive = map { $_ => 1 } split /\n/, $node->safe_psql('postgres', q{
SELECT format('%s/%s', stream_id, stream_version) FROM ocx_archive.events});
my @bad;
for my $i (0 .. 19)
{
	my @full = grep { my ($sv) = /^(\S+)/; !$in_archive{$sv} } split /,/, ($before->[$i] // '');
	my $expect = join(',', @full);
	push @bad, "read_stream arc-$i: '" . ($live->[$i] // '') . "' is not '$expect'" if ($live->[$i] // '') ne $expect;
}
is(join("\n", @bad), '', 'each live read_stream is the full one less its archived events');

$node->safe_psql('postgres', q{SELECT ocx.append('arc-0', NULL, '{"type": "A", "data": {"n": 1}}')});
diag($node->safe_psql('postgres', q{SELECT * FROM ocx.verify() WHERE NOT authorised LIMIT 5})) if $ENV{OCX_DEBUG};
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify() WHERE NOT authorised}), '0', 'ocx.verify() is clean');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.read_all(max_count => 100000, include_archived => true)}),
	$written + 1, 'and read_all over both holds every event');

# The export (issue 16): with include_archived => true it is the whole log,
# in log order, and imported into a fresh database it gives the same log
# (rows, tags, hashes; verify clean there); without it, the live log only.
my $export_ids = q{SELECT string_agg(cloudevent->>'id', ',' ORDER BY "cursor") FROM ocx.export(include_archived => ARCHIVED)};
my $log_ids = q{SELECT string_agg(event_id::text, ',' ORDER BY txid, global_position) FROM ocx.read_all(max_count => 100000, include_archived => ARCHIVED)};
is($node->safe_psql('postgres', $export_ids =~ s/ARCHIVED/true/r), $node->safe_psql('postgres', $log_ids =~ s/ARCHIVED/true/r),
	'the export with the archive is the whole log in log order');
is($node->safe_psql('postgres', $export_ids =~ s/ARCHIVED/false/r), $node->safe_psql('postgres', $log_ids =~ s/ARCHIVED/false/r),
	'the export without it is the live log');
my $file = $node->basedir . '/archived_log.ndjson';
$node->safe_psql('postgres', qq{COPY (SELECT cloudevent FROM ocx.export(include_archived => true))
    TO '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')});
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION ocx');
is(import_ndjson($node, 'fresh', $file), $written + 1, 'the export with the archive imports into a fresh database, every event');
my $cols = q{stream_id, stream_version, event_id, source, type, schema_version, time, data, metadata,
             correlation_id, causation_id, tags, encode(hash, 'hex')};
is($node->safe_psql('fresh', "SELECT string_agg(concat_ws(' ', $cols), E'\\n' ORDER BY txid, global_position) FROM ocx.events"),
	$node->safe_psql('postgres', "SELECT string_agg(concat_ws(' ', $cols), E'\\n' ORDER BY txid, global_position)
	    FROM (SELECT * FROM ocx.events UNION ALL SELECT * FROM ocx_archive.events) e"),
	'the imported log is the archived and live log, row for row (tags and hashes included)');
cmp_ok($node->safe_psql('fresh', q{SELECT count(*) FROM ocx.events WHERE tags IS NOT NULL}), '>', 100,
	'tagged events among them');
is($node->safe_psql('fresh', q{SELECT count(*) FROM ocx.verify()}), '0', 'and it verifies');

$node->stop;
done_testing();
