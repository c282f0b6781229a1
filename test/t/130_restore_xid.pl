# Issue 11, item 1: a restore into a cluster with another transaction-id
# counter.  The reproduction: dump a database whose cluster is at xid about
# 17,500, pg_restore --single-transaction into a fresh cluster at about 724,
# append one event.  On 0.2.0 read_all(NULL, NULL) returned 1 of 6 events,
# the new event's cursor (729/6) sorted below the restored projection
# checkpoint (17552/5), the read model never got it and poll returned only
# the new event.
#
# Here, in both directions (counter lower and higher) and with and without
# --single-transaction: read_all returns all 6 in order, the new event's
# cursor sorts after every restored checkpoint, and a projection, a
# subscription and a saga each continue exactly where they were: the new
# event is applied, polled and moves the saga exactly once, nothing restored
# is processed again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my %node;
for my $name ('high', 'low')
{
	my $n = PostgreSQL::Test::Cluster->new($name);
	$n->init;
	$n->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
});
	$n->start;
	$node{$name} = $n;
}

# the high cluster's counter to about 17,500
$node{high}->safe_psql('postgres', q{
CREATE PROCEDURE burn(n int) LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..n LOOP
        PERFORM pg_current_xact_id();
        COMMIT;
    END LOOP;
END $$;
CALL burn(17500);
});
my $high_xid = $node{high}->safe_psql('postgres', 'SELECT pg_current_xact_id()');
my $low_xid = $node{low}->safe_psql('postgres', 'SELECT pg_current_xact_id()');
ok($high_xid > 17000 && $low_xid < 2000, "the counters: high at $high_xid, low at $low_xid");

my $saga_id = '00000000-0000-4000-8000-000000000130';

# A database with 5 events, every consumer caught up on them: a projection
# into a read model, a subscription acknowledged to the end, a saga that took
# its first step on the fifth event and waits for BDone.
sub make_source
{
	my ($n) = @_;
	$n->safe_psql('postgres', 'CREATE DATABASE src');
	$n->safe_psql('src', qq{
CREATE EXTENSION ocx;
CREATE TABLE model (stream_id text, stream_version bigint, type text, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE sql
    AS \$\$ INSERT INTO public.model VALUES (e.stream_id, e.stream_version, e.type, e.global_position) \$\$;
SELECT ocx.define_projection('model', 'apply(ocx.event)');
SELECT ocx.create_subscription('sub');
SELECT ocx.define_saga('two', '{"steps": [
    {"name": "a", "command": "t.A", "success": "ADone"},
    {"name": "b", "command": "t.B", "success": "BDone"}]}');
SELECT ocx.start_saga('two', '{}', '$saga_id');
SELECT ocx.append('order-' || i, 0, '{"type": "Placed", "data": {}}') FROM generate_series(1, 4) i;
SELECT ocx.append('pay-1', 0, '{"type": "ADone", "correlation_id": "$saga_id"}');
});
	ok($n->poll_query_until('src', q{
SELECT (SELECT count(*) FROM model) = 5
   AND (SELECT lag_events FROM ocx.projection_status WHERE name = 'model') = 0
   AND (SELECT current_step FROM ocx.saga_instances) = 2
   AND (SELECT global_position FROM ocx.saga_cursor) = (SELECT max(global_position) FROM ocx.events)}),
		$n->name . ': projection and saga caught up on the 5 events');
	my $polled = $n->safe_psql('src', q{
SELECT count(*) || ' ' || max("cursor"::text) FROM ocx.poll('sub', 100, 'c')});
	my ($count, $last) = split / /, $polled;
	is($count, 5, $n->name . ': the subscription polled the 5 events');
	$n->safe_psql('src', "SELECT ocx.ack('sub', '$last', 'c')");
	is($n->safe_psql('src', q{SELECT count(*) FROM ocx.poll('sub', 100, 'c')}), '0',
		$n->name . ': and acknowledged them');
	my $dump = $n->basedir . '/src.dump';
	$n->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $n->connstr('src')], $n->name . ': pg_dump -Fc');
	my $ckpt = $n->safe_psql('src',
		q{SELECT checkpoint_txid || '/' || checkpoint_position FROM ocx.projections WHERE name = 'model'});
	note($n->name . ": restored projection checkpoint $ckpt");
	return $dump;
}

my %dump = (high => make_source($node{high}), low => make_source($node{low}));

my $db_no = 0;
for my $case (['high', 'low', 'lower'], ['low', 'high', 'higher'])
{
	my ($from, $to, $direction) = @$case;
	for my $opts ([], ['--single-transaction'])
	{
		my $n = $node{$to};
		my $what = "$from -> $to (counter $direction)"
		  . (@$opts ? ', --single-transaction' : ', plain');
		my $db = 'restored_' . ++$db_no;
		$n->safe_psql('postgres', "CREATE DATABASE $db");
		my ($stdout, $stderr);
		# as pg_restore names itself (the harness sets PGAPPNAME): the worker
		# waits for the restore (docs/operations.md)
		my $ok = do { local $ENV{PGAPPNAME} = 'pg_restore';
			IPC::Run::run(['pg_restore', @$opts, '--exit-on-error', '-d', $n->connstr($db), $dump{$from}],
			'>', \$stdout, '2>', \$stderr) };
		ok($ok, "$what: pg_restore succeeds") or diag($stderr);

		is($n->safe_psql($db, q{SELECT restores || ' ' || xid_offset FROM ocx.log_space}),
			'1 281474976710656', "$what: the log xid space moved up by 2^48 once");
		if ($direction eq 'lower')
		{
			ok($n->safe_psql($db, q{SELECT pg_current_xact_id() < min(txid) FROM ocx.events}) eq 't',
				"$what: this cluster's counter is below every restored txid");
		}

		my $ckpt = $n->safe_psql($db,
			q{SELECT checkpoint_txid || '/' || checkpoint_position FROM ocx.projections WHERE name = 'model'});

		# the reproduction: append one event
		$n->safe_psql($db, qq{SELECT ocx.append('pay-2', 0, '{"type": "BDone", "correlation_id": "$saga_id"}')});
		is($n->safe_psql($db, q{SELECT string_agg(stream_id, ',') FROM ocx.read_all(NULL, NULL)}),
			'order-1,order-2,order-3,order-4,pay-1,pay-2',
			"$what: read_all(NULL, NULL) returns the 6 events, the new one last");
		is($n->safe_psql($db, q{SELECT count(*) FROM ocx.read_stream('order-1')}), '1',
			"$what: read_stream returns the restored stream");
		is($n->safe_psql($db, qq{
SELECT (ocx.txid(e."cursor"), ocx.global_position(e."cursor"))
       > (ocx.txid(c), ocx.global_position(c))
  FROM ocx.read_all(NULL, NULL) e, ocx.cursor('$ckpt') c
 WHERE e.stream_id = 'pay-2'}), 't',
			"$what: the new event's cursor sorts after the restored projection checkpoint $ckpt");

		# the projection applies the new event, once, and nothing again
		ok($n->poll_query_until($db, q{SELECT count(*) = 6 FROM model}),
			"$what: the read model gets the new event");
		ok($n->poll_query_until($db,
			q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'model'}),
			"$what: the projection's lag is 0");
		sleep(1);
		is($n->safe_psql($db, q{
SELECT count(*) || ' ' || count(DISTINCT (stream_id, stream_version))
       || ' ' || count(*) FILTER (WHERE stream_id = 'pay-2') FROM model}),
			'6 6 1', "$what: every event in the read model exactly once");

		# the subscription polls exactly the new event
		is($n->safe_psql($db, q{SELECT string_agg(stream_id, ',') FROM ocx.poll('sub', 100, 'c')}),
			'pay-2', "$what: poll returns exactly the new event");

		# the saga takes its second step on the new event, once
		ok($n->poll_query_until($db, q{SELECT state = 'completed' FROM ocx.saga_instances}),
			"$what: the saga completes on the new event");
		is($n->safe_psql($db, q{
SELECT count(*) FILTER (WHERE event_type = 'ADone') || ' ' || count(*) FILTER (WHERE event_type = 'BDone')
  FROM ocx.saga_steps}), '1 1', "$what: each success event moved the saga once");
		is($n->safe_psql($db, q{
SELECT (SELECT global_position FROM ocx.saga_cursor) = (SELECT max(global_position) FROM ocx.events)}),
			't', "$what: the saga checkpoint is at the new event");

		# a second restore of the same dump into the same cluster moves up again
		if ($direction eq 'higher' && !@$opts)
		{
			$n->safe_psql('postgres', "CREATE DATABASE again");
			$ok = do { local $ENV{PGAPPNAME} = 'pg_restore';
				IPC::Run::run(['pg_restore', '--exit-on-error', '-d', $n->connstr('again'), $dump{$from}],
				'>', \$stdout, '2>', \$stderr) };
			ok($ok, "$what: restored a second time") or diag($stderr);
			$n->safe_psql('again', q{SELECT ocx.append('pay-2', 0, '{"type": "Other"}')});
			is($n->safe_psql('again', q{SELECT string_agg(stream_id, ',') FROM ocx.read_all(NULL, NULL)}),
				'order-1,order-2,order-3,order-4,pay-1,pay-2', "$what: again the new event is read last");
		}
	}
}

# the restored dumps of a restored database: the offset goes up again
{
	my $n = $node{low};
	my $dump = $n->basedir . '/restored.dump';
	$n->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $n->connstr('restored_1')], 'dump of a restored database');
	$node{high}->safe_psql('postgres', 'CREATE DATABASE twice');
	{ local $ENV{PGAPPNAME} = 'pg_restore';
		$node{high}->command_ok(['pg_restore', '--exit-on-error', '-d', $node{high}->connstr('twice'), $dump],
		'restored into the other cluster'); }
	is($node{high}->safe_psql('twice', q{SELECT restores || ' ' || xid_offset FROM ocx.log_space}),
		'2 562949953421312', 'a second restore: the offset is 2^49');
	$node{high}->safe_psql('twice', q{SELECT ocx.append('pay-3', 0, '{"type": "Other"}')});
	is($node{high}->safe_psql('twice', q{SELECT string_agg(stream_id, ',') FROM ocx.read_all(NULL, NULL)}),
		'order-1,order-2,order-3,order-4,pay-1,pay-2,pay-3', 'and the new event is read last');
	ok($node{high}->poll_query_until('twice', q{SELECT count(*) = 7 FROM model}),
		'the projection applies it');
}

$_->stop for values %node;
done_testing();
