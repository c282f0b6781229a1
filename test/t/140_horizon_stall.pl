# The long-transaction stall, visible (issue 12): a session that took an
# xid and stays open holds the log horizon, and with it every ocx consumer.
# ocx.projection_status, ocx.horizon_holder() and ocx.metrics() name its pid
# and age within 2 s; the projection applies nothing past it meanwhile;
# past ocx.horizon_warn_after the worker logs OX211 naming the pid, once a
# minute at most; after the commit the projection catches up.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('horizon');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '200ms'
max_prepared_transactions = 5
log_error_verbosity = verbose
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.model VALUES (e.global_position) $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}');
SELECT ocx.append_event('acct-1', 0, 'Opened', '{}');
});
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'model'}),
	'the projection applies the first event');
# (polled: the worker or autovacuum may hold an xid for a moment)
ok($node->poll_query_until('postgres',
	q{SELECT count(*) FILTER (WHERE pid IS NULL AND xact_age IS NULL AND backend_xid IS NULL
	                            AND datname IS NULL AND prepared_gid IS NULL) = 1
	    FROM ocx.horizon_holder()}),
	'no holder: horizon_holder() is one row of NULLs');

# a session takes an xid and holds it
my $holder = $node->background_psql('postgres');
my $pid = $holder->query_safe(q{SELECT pg_backend_pid()});
chomp $pid;
$holder->query_safe(q{BEGIN});
$holder->query_safe(q{SELECT txid_current()});

$node->safe_psql('postgres', q{
SELECT ocx.append_event('acct-1', 1, 'Deposited', '{"n": 1}');
SELECT ocx.append_event('acct-2', NULL, 'Deposited', '{"n": 2}');
});

# within 2 s: projection_status names the holder and its age
my $t0 = time();
my $seen = '';
while (time() - $t0 < 2)
{
	$seen = $node->safe_psql('postgres',
		qq{SELECT horizon_pid = $pid AND horizon_age > '0' FROM ocx.projection_status WHERE name = 'model'});
	last if $seen eq 't';
	usleep(50_000);
}
is($seen, 't', 'projection_status shows the holder\'s pid and an age above 0 within 2 s');
cmp_ok(time() - $t0, '<', 2, '... measured ' . sprintf('%.3f s', time() - $t0));
is($node->safe_psql('postgres',
	qq{SELECT pid = $pid AND xact_age > '0' AND backend_xid IS NOT NULL AND datname = 'postgres'
	          AND prepared_gid IS NULL
	     FROM ocx.horizon_holder()}), 't',
	'horizon_holder() names the session, its age, xid and database');

# the projection waits: several worker passes later it has applied nothing new
sleep(1);
is($node->safe_psql('postgres', q{SELECT count(*) FROM model}), '1',
	'the projection applies nothing past the held horizon');
is($node->safe_psql('postgres',
	q{SELECT lag_events FROM ocx.projection_status WHERE name = 'model'}), '2',
	'... and shows the two events as lag');

# the gauges
my $metrics = $node->safe_psql('postgres', q{SELECT ocx.metrics()});
like($metrics, qr/^# TYPE ocx_horizon_age_seconds gauge$/m, 'ocx_horizon_age_seconds is a gauge');
like($metrics, qr/^ocx_horizon_holder_pid $pid$/m, 'ocx_horizon_holder_pid is the holder');
my ($age) = $metrics =~ /^ocx_horizon_age_seconds ([0-9.]+)$/m;
ok(defined $age && $age >= 1, 'ocx_horizon_age_seconds counts the seconds held (' . ($age // 'none') . ')');

# the default ocx.horizon_warn_after (5 min) has not been reached: no warning
ok(!$node->log_contains(qr/OX211/), 'no OX211 before ocx.horizon_warn_after');

# a role with ocx_reader only: pid and xid, not the age of another role's session
$node->safe_psql('postgres', q{CREATE ROLE horizon_reader LOGIN IN ROLE ocx_reader});
is($node->safe_psql('postgres',
	qq{SELECT concat_ws(',', pid = $pid, backend_xid IS NOT NULL, xact_age IS NULL) FROM ocx.horizon_holder()},
	extra_params => [ '-U', 'horizon_reader' ]), 't,t,t',
	'ocx_reader: horizon_holder() names the pid; the age of another role\'s session is hidden');
is($node->safe_psql('postgres',
	qq{SELECT horizon_pid = $pid FROM ocx.projection_status WHERE name = 'model'},
	extra_params => [ '-U', 'horizon_reader' ]), 't',
	'ocx_reader: projection_status shows horizon_pid');
$node->safe_psql('postgres', q{GRANT pg_read_all_stats TO horizon_reader});
is($node->safe_psql('postgres',
	q{SELECT xact_age > '0' FROM ocx.horizon_holder()},
	extra_params => [ '-U', 'horizon_reader' ]), 't',
	'with pg_read_all_stats the reader sees the age too');

# past ocx.horizon_warn_after: OX211 naming the pid, once
my $offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "ocx.horizon_warn_after = '1s'");
$node->reload;
ok($node->wait_for_log(qr/WARNING:  OX211: process $pid has held the ocx log horizon for \d+ s/, $offset),
	'the worker logs OX211 naming the holder\'s pid');
my $log = slurp_file($node->logfile, $offset);
like($log, qr/HINT:  .*pg_terminate_backend\($pid\)/, '... and says what to do');
# the worker looks every second: five more looks, no second warning
sleep(5);
$log = slurp_file($node->logfile, $offset);
my $count = () = $log =~ /OX211: process $pid has held/g;
is($count, 1, 'the holder is named once within the minute');

# the holder ends: the projection catches up, nobody holds the horizon
$holder->query_safe(q{COMMIT});
ok($node->poll_query_until('postgres',
	q{SELECT lag_events = 0 AND horizon_pid IS NULL FROM ocx.projection_status WHERE name = 'model'}),
	'after the commit the projection catches up and horizon_pid is NULL');
is($node->safe_psql('postgres', q{SELECT count(*) FROM model}), '3', 'every event applied');

# a prepared transaction holds it too: no pid, its gid, a warning of its own
$node->safe_psql('postgres', q{BEGIN; SELECT txid_current(); PREPARE TRANSACTION 'held'});
$node->safe_psql('postgres', q{SELECT ocx.append_event('acct-3', NULL, 'Deposited', '{"n": 3}')});
is($node->safe_psql('postgres',
	q{SELECT pid IS NULL AND prepared_gid = 'held' AND xact_age >= '0' FROM ocx.horizon_holder()}), 't',
	'a prepared transaction is named by its gid');
ok($node->wait_for_log(qr/WARNING:  OX211: prepared transaction "held" has held the ocx log horizon/, $offset),
	'the worker warns about the prepared transaction');
$node->safe_psql('postgres', q{COMMIT PREPARED 'held'});
ok($node->poll_query_until('postgres',
	q{SELECT count(*) = 4 FROM model}), 'after COMMIT PREPARED the projection catches up');

$holder->quit;
$node->stop;
done_testing();
