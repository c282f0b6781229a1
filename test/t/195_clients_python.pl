# The psycopg 3 client examples (examples/clients/python, issue 17), run as
# programs against a cluster: tellers append with expected versions and retry
# on OX001 (every operation recorded once, balances never below zero); two
# command workers complete every command exactly once across a failure and a
# killed connection; a subscriber whose connection is killed again and again
# handles every event exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish);
use Time::HiRes qw(usleep);

my $examples = ($ENV{OCX_EXAMPLES} // die "OCX_EXAMPLES not set") . '/clients/python';
my ($python) = grep { -x $_ && system($_, '-c', 'import psycopg') == 0 } ('/usr/bin/python3', 'python3');
BAIL_OUT('no python3 with psycopg (Debian python3-psycopg)') unless $python;

my $node = PostgreSQL::Test::Cluster->new('clients_python');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION ocx');

$ENV{PGHOST} = $node->host;
$ENV{PGPORT} = $node->port;
$ENV{PGDATABASE} = 'postgres';
$ENV{PYTHONDONTWRITEBYTECODE} = 1;

sub script { return ($python, "$examples/$_[0]", @_[1 .. $#_]); }

sub kill_backends
{
	my ($app) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		 WHERE datname = current_database() AND application_name = '$app'});
}

sub wait_until
{
	my ($query, $what) = @_;
	my $deadline = time() + 120;
	until ($node->safe_psql('postgres', $query) eq 't')
	{
		die "timed out waiting for $what" if time() > $deadline;
		usleep(100_000);
	}
}

# --- appends with expected versions
my ($out, $err) = ('', '');
IPC::Run::run([ script('append.py', '--prefix', 'pyacct', '--accounts', 3, '--tellers', 6, '--ops', 20) ],
	'>', \$out, '2>', \$err) or die "append.py failed: $err";
my ($conflicts) = $out =~ /"conflicts": (\d+)/;
like($out, qr/"operations": 120/, 'the tellers ran 120 operations');
ok($conflicts > 0, "the tellers raced: $conflicts OX001 retried");
is($node->safe_psql('postgres', q{
	SELECT count(*) || '|' || count(DISTINCT event_id) FROM ocx.read_all(NULL, NULL, NULL, ARRAY['pyacct'])}),
	'120|120', 'every operation recorded exactly once');
is($node->safe_psql('postgres', q{
	WITH e AS (SELECT stream_id, stream_version,
	                  sum(CASE type WHEN 'Deposited' THEN (data->>'amount')::int
	                                WHEN 'Withdrawn' THEN -(data->>'amount')::int ELSE 0 END)
	                    OVER (PARTITION BY stream_id ORDER BY stream_version) AS balance,
	                  row_number() OVER (PARTITION BY stream_id ORDER BY stream_version) AS n
	             FROM ocx.read_all(NULL, NULL, NULL, ARRAY['pyacct']))
	SELECT count(*) FILTER (WHERE balance < 0) || '|' || count(*) FILTER (WHERE n <> stream_version) ||
	       '|' || count(*) FILTER (WHERE true) FROM e}),
	'0|0|120', 'no balance below zero, versions gap-free');

# --- command workers
$node->safe_psql('postgres', q{
	SELECT ocx.define_command_handler('py.Receipt', NULL,
	    '{"max_attempts": 5, "base_delay": "50 milliseconds", "max_delay": "1 second"}');
	SELECT ocx.send_command('py.Receipt', jsonb_build_object('n', g, 'flaky', g % 8 = 0))
	  FROM generate_series(1, 40) g});
my @workers = map {
	my ($o, $e) = ('', '');
	{ h => start([ script('worker.py', '--types', 'py.Receipt', '--claimer', "py$_",
				'--visibility', '2 seconds', '--idle-exit', 4) ], '>', \$o, '2>', \$e),
	  out => \$o, err => \$e }
} (1, 2);
wait_until(q{SELECT count(*) >= 10 FROM ocx.command_status WHERE type = 'py.Receipt' AND status = 'succeeded'},
	'some commands to succeed');
my $worker_kills = kill_backends('ocx-example-worker');
wait_until(q{SELECT count(*) = 40 FROM ocx.command_status WHERE type = 'py.Receipt' AND status = 'succeeded'},
	'every command to succeed');
my ($completed, $failed, $reconnects) = (0, 0, 0);
for my $w (@workers)
{
	finish($w->{h}) or die "worker.py failed: ${$w->{err}}";
	$completed += $1 if ${$w->{out}} =~ /"completed": (\d+)/;
	$failed += $1 if ${$w->{out}} =~ /"failed": (\d+)/;
	$reconnects += $1 if ${$w->{out}} =~ /"reconnects": (\d+)/;
}
is($node->safe_psql('postgres', q{
	SELECT count(*) FILTER (WHERE status = 'succeeded'
	         AND (SELECT count(*) FROM jsonb_array_elements(history) h WHERE h->>'event' = 'succeeded') = 1)
	  FROM ocx.command_status WHERE type = 'py.Receipt'}),
	'40', 'every command succeeded, completed once');
is($node->safe_psql('postgres', q{
	SELECT count(*) || '|' || count(DISTINCT e.causation_id) || '|' ||
	       count(*) FILTER (WHERE e.causation_id = c.command_id AND e.correlation_id = c.correlation_id)
	  FROM ocx.read_all(NULL, NULL, NULL, ARRAY['receipt']) e
	  JOIN ocx.command_status c ON e.stream_id = 'receipt-' || c.command_id
	 WHERE c.type = 'py.Receipt'}),
	'40|40|40', 'one receipt per command, with its correlation and causation');
is($completed, 40, 'the workers completed 40 commands between them');
ok($failed >= 1, "flaky commands were failed with fail_command ($failed)");
ok($worker_kills > 0 && $reconnects >= 1, "a worker lost its connection and came back ($worker_kills killed)");

# --- a subscriber killed again and again (its handling takes 2 ms an event, so
# kills land between the poll and the ack)
my ($sout, $serr) = ('', '');
my $sub = start([ script('subscriber.py', '--subscription', 'py_sub', '--category', 'pyev', '--idle-exit', 3,
		'--work-ms', 2) ],
	'>', \$sout, '2>', \$serr);
my $kills = 0;
for my $b (1 .. 30)
{
	$node->safe_psql('postgres', qq{
		SELECT ocx.append('pyev-' || (g % 5), NULL, jsonb_build_object('type', 'Noted', 'data',
		                  jsonb_build_object('b', $b, 'g', g))) FROM generate_series(1, 10) g});
	usleep(int(rand(40_000)));
	$kills += kill_backends('ocx-example-subscriber') if $b % 3 == 0;
}
wait_until(q{SELECT to_regclass('example_handled') IS NOT NULL
             AND (SELECT count(*) >= 300 FROM example_handled WHERE subscription = 'py_sub')},
	'the subscriber to catch up');
finish($sub) or die "subscriber.py failed: $serr";
is($node->safe_psql('postgres', q{
	SELECT count(*) || '|' || count(DISTINCT event_id) || '|' ||
	       (SELECT count(*) FROM ocx.read_all(NULL, NULL, NULL, ARRAY['pyev']) e
	         WHERE e.event_id NOT IN (SELECT event_id FROM example_handled))
	  FROM example_handled WHERE subscription = 'py_sub'}),
	'300|300|0', 'every event handled exactly once, none missed');
my ($sreconnects) = $sout =~ /"reconnects": (\d+)/;
ok($kills >= 3 && $sreconnects >= 3, "the subscriber was killed $kills times and reconnected $sreconnects times");

$node->stop;
done_testing();
