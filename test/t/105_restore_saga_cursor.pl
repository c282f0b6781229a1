# Issue 11, item 7: pg_dump -Fc of a database with a saga checkpoint, then
# pg_restore into new databases of the same cluster while the worker runs
# (plain and --single-transaction): the restore succeeds (no duplicate key on
# saga_cursor) and the saga checkpoint equals the original (not 0/0).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('restore');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
});
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
CREATE EXTENSION ocx;
SELECT ocx.append_event('order-' || i, NULL, 'Placed', '{}') FROM generate_series(1, 50) i;
});
my $cursor_sql = q{SELECT txid || '/' || global_position FROM ocx.saga_cursor};
ok($node->poll_query_until('src',
	q{SELECT c.global_position = (SELECT max(global_position) FROM ocx.events) FROM ocx.saga_cursor c}),
	'the worker moved the saga checkpoint to the end of the log');
my $checkpoint = $node->safe_psql('src', $cursor_sql);
isnt($checkpoint, '0/0', "the saga checkpoint is $checkpoint");

my $dump = $node->basedir . '/src.dump';
$node->command_ok(['pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src')], 'pg_dump -Fc');

for my $case (['plain', []], ['single', ['--single-transaction']])
{
	my ($name, $opts) = @$case;
	my $db = "restored_$name";
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($stdout, $stderr);
	# as pg_restore names itself (the harness sets PGAPPNAME; docs/operations.md)
	my $ok = do { local $ENV{PGAPPNAME} = 'pg_restore';
		IPC::Run::run(['pg_restore', @$opts, '--exit-on-error', '-d', $node->connstr($db), $dump],
		'>', \$stdout, '2>', \$stderr) };
	ok($ok, "$name: pg_restore succeeds") or diag($stderr);
	unlike($stderr // '', qr/duplicate key/, "$name: no duplicate key error");
	ok($node->poll_query_until($db,
		q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'ocx worker' AND datname = current_database()}),
		"$name: the worker runs in the restored database");
	# give the worker a few rounds
	sleep(1);
	is($node->safe_psql($db, $cursor_sql), $checkpoint, "$name: the saga checkpoint equals the original");
	is($node->safe_psql($db, 'SELECT count(*) FROM ocx.saga_cursor'), '1', "$name: one checkpoint row");
	is($node->safe_psql($db, 'SELECT count(*) FROM ocx.events'), '50', "$name: the events are restored");
}

$node->stop;
done_testing();
