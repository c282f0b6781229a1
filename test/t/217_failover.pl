# A failover, as an operator meets it: the primary, replicating
# synchronously to a streaming standby, crashes (an immediate stop, no
# shutdown checkpoint, nothing more sent) part-way through the work, the
# standby is promoted and the applications go on against it.  Before: events
# appended, an async projection caught up, a consumer of a durable
# subscription part-way (some acknowledged, a batch in hand), a paged export
# part-way.  After the promotion, on the new primary:
#  - every event committed on the old primary is there, in the same order
#    (synchronous replication: a commit returned once the standby had it);
#  - the ocx workers start by themselves (none ran on the standby) and the
#    projection applies the new events, every event of the log once;
#  - appends go on with the stream versions where they were (an expected
#    version from before the failover holds, a stale one is refused), and
#    LISTEN ocx_events wakes a listener;
#  - the consumer's subscription goes on from its acknowledgement: every
#    event acknowledged once, none lost, none after its ack;
#  - the export resumed from its cursor of the old primary writes the rest
#    of the log, each event once, in log order;
#  - ocx.verify() is clean: the hash chains run on across the failover.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxModel;
use Time::HiRes qw(usleep time);
use OcxFuzz;

my $old = PostgreSQL::Test::Cluster->new('failover_old');
$old->init(allows_streaming => 1);
$old->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
});
$old->start;
$old->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (stream_id text, stream_version bigint, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.model VALUES (e.stream_id, e.stream_version, e.global_position);
END $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}');
SELECT ocx.define_subscription('billing', categories => ARRAY['acct']);
});
$old->backup('b1');
my $new = PostgreSQL::Test::Cluster->new('failover_new');
$new->init_from_backup($old, 'b1', has_streaming => 1);
$new->start;
# commits wait for the standby from here on
$old->safe_psql('postgres', q{ALTER SYSTEM SET synchronous_standby_names = 'failover_new'; SELECT pg_reload_conf()});
$old->poll_query_until('postgres',
	q{SELECT sync_state = 'sync' FROM pg_stat_replication WHERE application_name = 'failover_new'});

# the projection's read model against the log: rows, and rows that differ
my $diff_sql = model_diff_sql();
my $append_round = sub {
	my ($node, $round) = @_;
	$node->safe_psql('postgres', qq{
SELECT ocx.append_event('acct-' || (i % 10), NULL, 'Deposited', jsonb_build_object('round', $round, 'i', i))
  FROM generate_series(1, 60) i;
SELECT ocx.append('acct-' || i, NULL, '[{"type": "Tagged", "data": {}, "tags": ["r$round"]}, {"type": "Noted", "data": {}}]')
  FROM generate_series(1, 5) i;
SELECT ocx.append_event('other-1', NULL, 'Elsewhere', '{}');});
};

# before: appends, the projection caught up
$append_round->($old, 1);
ok($old->poll_query_until('postgres', q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'model'}),
	'before: the projection catches up');
my $acct1 = $old->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%'});
is($old->safe_psql('postgres', $diff_sql), "$acct1:0", 'before: the read model is the log');

# a consumer part-way: 25 acknowledged, 15 more in hand
my @acked;
my $poll = sub {
	my ($node, $n) = @_;
	return [ map { [ split /\|/ ] } grep { $_ ne '' } split /\n/, $node->safe_psql('postgres',
		"SELECT event_id || '|' || cursor::text FROM ocx.poll('billing', $n, consumer => 'c1')") ];
};
my $batch = $poll->($old, 40);
is(scalar @$batch, 40, 'before: the consumer polls 40 events');
$old->safe_psql('postgres', "SELECT ocx.ack('billing', '$batch->[24][1]', consumer => 'c1')");
push @acked, map { $_->[0] } @$batch[ 0 .. 24 ];

# an export part-way: two pages of 30
my $export = export_pager($old->background_psql('postgres'), undef);
export_page($export, 30) for 1 .. 2;
is(scalar @{ $export->{ids} }, 60, 'before: two pages exported');
$export->{s}->quit;
my $version_before = $old->safe_psql('postgres', q{SELECT ocx.stream_version('acct-3')});

my @log_before = split /\n/, $old->safe_psql('postgres', q{SELECT event_id FROM ocx.events ORDER BY txid, global_position});
is($old->safe_psql('postgres', q{SELECT sync_state FROM pg_stat_replication WHERE application_name = 'failover_new'}), 'sync',
	'the standby replicates synchronously');
is($new->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ocx worker'}), '0',
	'no ocx worker runs on the standby');

# the failover: the primary crashes, the standby is promoted (no waiting for it
# to catch up first: what it has flushed is what was committed)
$old->stop('immediate');
$new->promote;
$new->poll_query_until('postgres', q{SELECT NOT pg_is_in_recovery()});
my @log_after = split /\n/, $new->safe_psql('postgres', q{SELECT event_id FROM ocx.events ORDER BY txid, global_position});
is("@log_after", "@log_before", 'after: every event committed on the old primary is there, in the same order');
ok($new->poll_query_until('postgres',
	q{SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'ocx worker' AND datname = 'postgres'}),
	'after: the ocx worker starts on the promoted standby');

# appends go on where the streams were
is($new->safe_psql('postgres', "SELECT ocx.append_event('acct-3', $version_before, 'Deposited', '{\"after\": true}')"),
	$version_before + 1, 'after: an append with the expected version from before the failover goes on');
my ($rc, $out, $err) = $new->psql('postgres',
	"\\set VERBOSITY verbose\nSELECT ocx.append_event('acct-3', $version_before, 'Deposited', '{}')");
like($err, qr/OX001/, 'after: a stale expected version is refused (OX001)');

my $listener = $new->background_psql('postgres');
$listener->query_safe('LISTEN ocx_events');
$append_round->($new, 2);
my $heard = '';
my $until = time() + 60;
while ($heard !~ /Asynchronous notification "ocx_events"/ && time() < $until)
{
	usleep(100_000);
	$heard .= $listener->query_safe('SELECT 1') . "\n";
}
like($heard, qr/Asynchronous notification "ocx_events"/, 'after: LISTEN ocx_events is woken by the new primary');
$listener->quit;

# the projection applies the new events, each once
ok($new->poll_query_until('postgres', q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'model'}),
	'after: the projection catches up on the new primary');
my $acct2 = $new->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%'});
cmp_ok($acct2, '>', $acct1, 'after: the log holds the new events');
is($new->safe_psql('postgres', $diff_sql), "$acct2:0", 'after: the read model is the log, every event applied once');

# the consumer goes on from its acknowledgement (the 15 in hand come again)
my %acked_once = map { $_ => 1 } @acked;
my @violations;
for (1 .. 50)
{
	my $b = $poll->($new, 17);
	last unless @$b;
	for my $e (@$b)
	{
		push @violations, "$e->[0] delivered after its ack" if $acked_once{ $e->[0] };
	}
	$new->safe_psql('postgres', "SELECT ocx.ack('billing', '$b->[-1][1]', consumer => 'c1')");
	push @acked, map { $_->[0] } @$b;
	$acked_once{ $_->[0] } = 1 for @$b;
}
my @acct = split /\n/, $new->safe_psql('postgres',
	q{SELECT event_id FROM ocx.events WHERE stream_id LIKE 'acct-%' ORDER BY txid, global_position});
is("@acked", "@acct", 'after: the subscription acknowledged every acct event once, in log order, across the failover');
is(join('; ', @violations), '', 'after: no event was delivered after its ack');

# the export resumed from the old primary's cursor
$export->{s} = $new->background_psql('postgres');
1 while export_page($export, 50) > 0;
$export->{s}->quit;
my @log = split /\n/, $new->safe_psql('postgres', q{SELECT event_id FROM ocx.events ORDER BY txid, global_position});
is("@{ $export->{ids} }", "@log", 'after: the export resumed from its cursor is the whole log, each event once, in log order');

is($new->safe_psql('postgres', 'SELECT count(*) FROM ocx.verify()'), '0',
	'after: ocx.verify() is clean (the hash chains run on across the failover)');

$new->stop;
done_testing();
