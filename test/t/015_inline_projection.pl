# An inline projection defined, and rebuilt, while 8 writers append: it
# catches up in the worker, switches to the appending transactions without
# missing or doubling an event, and its read model equals a full replay.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxModel;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('inline');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.batch_size = 50
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (stream_id text, stream_version bigint, pos bigint);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.model VALUES (e.stream_id, e.stream_version, e.global_position) $$;
CREATE FUNCTION reset() RETURNS void LANGUAGE sql AS $$ DELETE FROM public.model $$;
SELECT ocx.append_event('acct-' || i, NULL, 'Opened', '{}') FROM generate_series(1, 500) i;
});

my $script = $node->basedir . '/writers.sql';
PostgreSQL::Test::Utils::append_to_file($script, q{
\set s random(1, 200)
\set r random(1, 10)
BEGIN;
SELECT ocx.append_event('acct-' || :s, NULL, 'Deposited', jsonb_build_object('n', :r));
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
});

# the writers run in the background; finish_writers checks that they did run:
# pgbench exited 0 and committed transactions
sub writers
{
	my ($secs) = @_;
	my %w = (out => '', err => '');
	$w{h} = IPC::Run::start(
		[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', $secs, '-f', $script,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \$w{out}, '2>', \$w{err});
	return \%w;
}

sub finish_writers
{
	my ($w, $what) = @_;
	my $ok = $w->{h}->finish;
	ok($ok, "$what: pgbench exited 0") or diag("pgbench: $w->{err}");
	like($w->{out}, qr/number of transactions actually processed: [1-9]/,
		"$what: the writers committed transactions");
}

my $diff_sql = model_diff_sql();

my $h = writers(6);
sleep 1;
$node->safe_psql('postgres',
	q{SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}', mode => 'inline', reset => 'reset()')});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'running' FROM ocx.projection_status WHERE name = 'model'}),
	'defined during the load, it catches up and switches to the appends');
finish_writers($h, 'defined during the load');
my $n = $node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%'});
is($node->safe_psql('postgres', $diff_sql), "$n:0",
	'read model equals a full replay: no event missed or applied twice');

$h = writers(6);
sleep 1;
$node->safe_psql('postgres', q{SELECT ocx.rebuild_projection('model')});
ok($node->poll_query_until('postgres',
	q{SELECT state = 'running' FROM ocx.projection_status WHERE name = 'model'}),
	'rebuilt during the load, it switches back to the appends');
finish_writers($h, 'rebuilt during the load');
$n = $node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%'});
is($node->safe_psql('postgres', $diff_sql), "$n:0", 'after the rebuild too');

$node->stop;
done_testing();
