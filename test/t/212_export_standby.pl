# The export read from a hot standby (issue 16, docs/migrating.md "The
# export"; as an operator does it: on a replica, to keep the load off the
# primary).  Three writer sessions on the primary append in random
# transactions held open across the others' steps (savepoints and whole
# transactions rolled back) while, on a streaming standby, a role that holds
# only ocx_reader exports the whole log and one category page by page,
# resuming each page after the last cursor it got.  Checked once the
# writers are done and the standby has replayed everything:
#  - each paged export on the standby is the primary's log (the category)
#    in log order, every committed event once;
#  - the standby's export, one call, is the primary's, document for
#    document;
#  - ocx.verify() is clean on the standby (run by a role holding ocx_admin),
#    and an import there is refused with 25006;
#  - read-your-writes: wait_for on the standby, for an append made on the
#    primary, returns once the standby's read model shows it;
#  - the standby's export, imported into a fresh cluster, is the primary's
#    log row for row (hashes included) and verifies there.
# The log horizon a standby reads under is its snapshot's xmin whatever
# ocx.horizon says (appenders.c: the appenders' slots are the primary's);
# OCX_SUB_HORIZON=appenders runs this file with that setting on both.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use OcxFuzz;

my $seed = fuzz_seed();
note("ocx fuzz seed: $seed");
my $steps = $ENV{OCX_DIFFERENTIAL_OPS} // 800;
my $horizon = $ENV{OCX_SUB_HORIZON} // 'snapshot';
note("ocx.horizon = $horizon");

my $primary = PostgreSQL::Test::Cluster->new("export_primary_$horizon");
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
ocx.horizon = '$horizon'
});
$primary->start;
$primary->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE ROLE auditor LOGIN;
GRANT ocx_reader TO auditor;
CREATE ROLE operator LOGIN;
GRANT ocx_admin TO operator;
-- a read model for read-your-writes on the standby
CREATE TABLE model (stream_id text, stream_version bigint);
GRANT SELECT ON model TO auditor;
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.model VALUES (e.stream_id, e.stream_version) $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{ryw}');
});
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new("export_standby_$horizon");
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;

my @streams = ((map { "ord-$_" } 1 .. 6), (map { "inv-$_" } 1 .. 4), (map { "oth-$_" } 1 .. 3));
my $seq = 0;
my $writers = random_writers($primary, 3, \@streams, sub {
	my ($s, $own) = @_;
	my $stream = pick(@$own);
	$seq++;
	if (chance(0.2))
	{
		# a batch, tagged, with metadata
		$s->query_safe("SELECT ocx.append('$stream', NULL, '[{\"type\": \"Batched\", \"data\": {\"seq\": $seq}, "
			  . "\"metadata\": {\"who\": \"$stream\"}, \"tags\": [\"t$seq\"]}, {\"type\": \"Batched\", \"data\": {\"seq\": -$seq}}]')");
	}
	else
	{
		$s->query_safe("SELECT ocx.append_event('$stream', NULL, '" . pick('Placed', 'Changed') . "', '{\"seq\": $seq}')");
	}
});

# the exports on the standby, as the reader role, resumed from their cursors
my %exporter = map {
	my $s = $standby->background_psql('postgres');
	$s->query_safe('SET SESSION AUTHORIZATION auditor');
	$_ => export_pager($s, $_ eq 'all' ? undef : 'inv')
} qw(all inv);

# got and want name the same events in the same order; a failure says how
# many were missing, extra or repeated, and where the first difference is
sub same_sequence
{
	my ($got, $want, $name) = @_;
	my %in_want = map { $_ => 1 } @$want;
	my %in_got = map { $_ => 1 } @$got;
	my %seen;
	my $missing = grep { !$in_got{$_} } @$want;
	my $extra = grep { !$in_want{$_} } @$got;
	my $repeated = grep { $seen{$_}++ } @$got;
	my $first = 0;
	$first++ while $first < @$want && $first < @$got && $got->[$first] eq $want->[$first];
	my $summary = scalar(@$got) . " events, $missing missing, $extra extra, $repeated repeated"
	  . ($first < @$want || $first < @$got ? ", the first difference at event " . ($first + 1) : '');
	is($summary, scalar(@$want) . ' events, 0 missing, 0 extra, 0 repeated', $name);
}

for my $step (1 .. $steps)
{
	if (chance(0.6)) { writer_step($writers, int(rand(3))); }
	else { export_page($exporter{ pick('all', 'inv') }); }
}
note("the exporters' pages before the writers finished: all $exporter{all}{pages}, inv $exporter{inv}{pages}");
ok($exporter{all}{pages} > 10 && $exporter{inv}{pages} > 5,
	'the standby exported pages while the primary appended');

# the writers finish (open transactions commit or roll back), the standby
# replays all, the exports drain
writers_finish($writers, 0.7);
my @log = split /\n/, $primary->safe_psql('postgres',
	q{SELECT event_id FROM ocx.events ORDER BY txid, global_position});
my @inv = split /\n/, $primary->safe_psql('postgres',
	q{SELECT event_id FROM ocx.events WHERE stream_id LIKE 'inv-%' ORDER BY txid, global_position});
$primary->wait_for_catchup($standby, 'replay');
# The standby shows an event once every transaction older than it has ended
# there.  The end of a rolled-back transaction (and the primary worker's
# asynchronous commits) reaches the standby when the primary writes it, up to
# wal_writer_delay after the primary's last flush that wait_for_catchup
# waited for: until then the exports wait at that transaction (seen with
# seed 1: the standby's horizon 938 with the primary's at 944, the events
# of 936 to 940 shown a moment later).  So page on until the exports hold as
# many events as the primary committed, for at most 60 seconds: an event
# that a cursor passed over never comes, and the comparison below says so.
for my $which (qw(all inv))
{
	my $want = $which eq 'all' ? scalar @log : scalar @inv;
	my $start = time();
	my $waited = 0;
	while (scalar @{ $exporter{$which}{ids} } < $want && time() < $start + 60)
	{
		next if export_page($exporter{$which}) > 0;
		note("the $which export waits at $exporter{$which}{after}: the standby's snapshot "
			  . $standby->safe_psql('postgres', 'SELECT pg_current_snapshot()') . ', the primary\'s '
			  . $primary->safe_psql('postgres', 'SELECT pg_current_snapshot()'))
		  unless $waited++;
		usleep(100_000);
	}
	note(sprintf("the %s export drained in %.1f s", $which, time() - $start));
	$exporter{$which}{s}->quit;
}
note(scalar(@log) . " events committed, " . scalar(@inv) . " of inv");
ok(@log > 100 && @inv > 20, 'the primary committed events of every kind');
same_sequence($exporter{all}{ids}, \@log, "the standby's paged export is the primary's log in log order");
same_sequence($exporter{inv}{ids}, \@inv, "the standby's paged export of a category is its events in log order");

# one call: the same documents on both
my $whole = q{SELECT string_agg(cursor::text || ' ' || cloudevent::text, E'\n' ORDER BY cursor) FROM ocx.export()};
is($standby->safe_psql('postgres', "SET SESSION AUTHORIZATION auditor; $whole"),
	$primary->safe_psql('postgres', $whole), "the standby's export is the primary's, document for document");
is($standby->safe_psql('postgres', 'SET SESSION AUTHORIZATION operator; SELECT count(*) FROM ocx.verify()'), '0',
	'ocx.verify() is clean on the standby (as an ocx_admin)');

# an import on the standby is refused with the read-only SQLSTATE (it was
# an internal error, XX000 "cannot assign TransactionIds during recovery")
my ($rc, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\nSELECT ocx.import_begin();",
	on_error_stop => 1);
like($err, qr/ERROR:  25006: cannot take a log transaction id during recovery/,
	'an import on the standby is refused: 25006');

# the standby's export imported into a fresh cluster: the primary's log
my $file = $standby->basedir . '/standby_export.ndjson';
my $ndjson = $standby->safe_psql('postgres',
	q{SET SESSION AUTHORIZATION auditor; SELECT string_agg(cloudevent::text, E'\n' ORDER BY cursor) FROM ocx.export()});
open(my $fh, '>', $file) or die "open $file: $!";
print $fh "$ndjson\n";
close $fh;
my $fresh = PostgreSQL::Test::Cluster->new("export_import_$horizon");
$fresh->init;
$fresh->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\n");
$fresh->start;
$fresh->safe_psql('postgres', 'CREATE EXTENSION ocx');
is(import_ndjson($fresh, 'postgres', $file), scalar(@log), 'the import of the standby\'s export wrote every event');
my $rows = q{COPY (SELECT stream_id, stream_version, event_id, source, type, schema_version, time, data, metadata,
                         correlation_id, causation_id, tags, encode(hash, 'hex')
                    FROM ocx.events ORDER BY txid, global_position) TO STDOUT};
is($fresh->safe_psql('postgres', "SET TIME ZONE 'UTC'; $rows"), $primary->safe_psql('postgres', "SET TIME ZONE 'UTC'; $rows"),
	"the imported log is the primary's, row for row and in log order");
is($fresh->safe_psql('postgres', 'SELECT count(*) FROM ocx.verify()'), '0', 'and it verifies');

# read-your-writes against the standby: an append on the primary, then
# wait_for on the standby (as the reader role) until the primary's worker
# has applied it and the checkpoint has been replayed; the read model there
# then shows it.  A cursor past the log is not passed within the timeout.
my $ryw = $primary->safe_psql('postgres',
	q{SELECT ocx.append_event('ryw-1', NULL, 'Made', '{}') \g /dev/null
	  SELECT ocx.last_append_cursor()});
is($standby->safe_psql('postgres', qq{SET SESSION AUTHORIZATION auditor;
	SELECT ocx.wait_for('model', '$ryw', '60 seconds');
	SELECT count(*) FROM model WHERE stream_id = 'ryw-1'}), "t\n1",
	'read-your-writes on the standby: wait_for returns true, then the read model there shows the append');
my ($rtxid) = $ryw =~ m{^(\d+)/};
is($standby->safe_psql('postgres', "SET SESSION AUTHORIZATION auditor; SELECT ocx.wait_for('model', '"
		. ($rtxid + 1000) . "/1', '200 milliseconds')"), 'f',
	'wait_for on the standby returns false for a cursor nothing has reached');

$fresh->stop;
$standby->stop;
$primary->stop;
done_testing();
