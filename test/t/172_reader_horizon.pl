# The one reader under the appenders' horizon (issue 12): with
# ocx.horizon = 'appenders', several concurrent appenders (quick ones, long
# and overlapping ones, ones that register before they take an xid, ones
# that take an xid before they append and may be refused with OX013, ones
# that roll back) and a session that holds an xid all along, while
# consumers read the log as it grows: two subscriptions through poll/ack and
# two read_all pagers (1000 and 37 per page).  Every consumer records every
# event it gets, in the transaction that moves its cursor.  At the end each
# one has every event of the final log that it selects, exactly once, in
# log order: none skipped, none delivered twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);

my $seconds = $ENV{OCX_READER_SECONDS} // 10;

my $node = PostgreSQL::Test::Cluster->new('reader_horizon');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.horizon = 'appenders'
ocx.naptime = '200ms'
max_connections = 40
});
$node->start;

is($node->safe_psql('postgres', q{SHOW ocx.horizon}), 'appenders', 'ocx.horizon is appenders');

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE ctl (stop boolean NOT NULL);
INSERT INTO ctl VALUES (false);
CREATE TABLE side (n int);
CREATE TABLE refused (n int);
-- what each consumer got: one row per delivery, with the order it came in
CREATE TABLE got (reader text, seq bigserial, pos bigint, cur ocx.cursor);
CREATE TABLE pagers (name text PRIMARY KEY, cur ocx.cursor);
INSERT INTO pagers VALUES ('read_all_1000', NULL), ('read_all_37', NULL);
SELECT ocx.create_subscription('all_events');
SELECT ocx.create_subscription('acct_only', categories => '{acct}');

-- an appender that takes its xid first (another write), then appends: it
-- is refused (OX013) when a reader already passed its xid; then nothing of
-- it reaches the log
CREATE FUNCTION xid_first(s int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO side VALUES (s);
    PERFORM pg_sleep(random() * 0.05);
    BEGIN
        PERFORM ocx.append_event('acct-' || s, NULL, 'Late', '{}');
    EXCEPTION WHEN SQLSTATE 'OX013' THEN
        INSERT INTO refused VALUES (s);
    END;
END $$;

-- poll, record, ack, commit; until stopped and three polls in a row are empty
CREATE PROCEDURE consume_poll(s text, n int) LANGUAGE plpgsql AS $$
DECLARE
    k int;
    last ocx.cursor;
    empty int := 0;
BEGIN
    LOOP
        WITH p AS (SELECT p.global_position, p."cursor", p.ordinality
                     FROM ocx.poll(s, n) WITH ORDINALITY p),
             ins AS (INSERT INTO got (reader, pos, cur)
                     SELECT s, p.global_position, p."cursor" FROM p ORDER BY p.ordinality)
        SELECT count(*), (array_agg(p."cursor" ORDER BY p.ordinality DESC))[1] INTO k, last FROM p;
        IF k > 0 THEN
            PERFORM ocx.ack(s, last);
            empty := 0;
        ELSE
            empty := empty + 1;
        END IF;
        COMMIT;
        EXIT WHEN empty >= 3 AND (SELECT c.stop FROM ctl c);
        IF k = 0 THEN
            PERFORM pg_sleep(0.01);
        END IF;
    END LOOP;
END $$;

-- read_all paging after a stored cursor, the same way
CREATE PROCEDURE consume_read(r text, n int) LANGUAGE plpgsql AS $$
DECLARE
    k int;
    last ocx.cursor;
    empty int := 0;
BEGIN
    LOOP
        WITH p AS (SELECT p.global_position, p."cursor", p.ordinality
                     FROM ocx.read_all((SELECT g.cur FROM pagers g WHERE g.name = r), n) WITH ORDINALITY p),
             ins AS (INSERT INTO got (reader, pos, cur)
                     SELECT r, p.global_position, p."cursor" FROM p ORDER BY p.ordinality)
        SELECT count(*), (array_agg(p."cursor" ORDER BY p.ordinality DESC))[1] INTO k, last FROM p;
        IF k > 0 THEN
            UPDATE pagers g SET cur = last WHERE g.name = r;
            empty := 0;
        ELSE
            empty := empty + 1;
        END IF;
        COMMIT;
        EXIT WHEN empty >= 3 AND (SELECT c.stop FROM ctl c);
        IF k = 0 THEN
            PERFORM pg_sleep(0.01);
        END IF;
    END LOOP;
END $$;
});

# a session that holds an xid all along (it never appends: the appenders'
# horizon passes it)
my $holder = $node->background_psql('postgres');
$holder->query_safe(q{BEGIN});
$holder->query_safe(q{SELECT txid_current()});

# consumers
my @consumers;
for my $c ([ 'consume_poll', 'all_events', 50 ], [ 'consume_poll', 'acct_only', 20 ],
		   [ 'consume_read', 'read_all_1000', 1000 ], [ 'consume_read', 'read_all_37', 37 ])
{
	my ($proc, $name, $n) = @$c;
	my ($out, $err) = ('', '');
	push @consumers, [ $name, IPC::Run::start(
		[ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-h', $node->host, '-p', $node->port,
		  '-d', 'postgres', '-c', "CALL $proc('$name', $n)" ],
		'>', \$out, '2>', \$err), \$out, \$err ];
}

# writers
my $dir = $node->basedir;
my %scripts = (
	'quick.sql' => q{
\set s random(1, 50)
SELECT ocx.append_event('acct-' || :s, NULL, 'Tick', '{}');
},
	'long.sql' => q{
\set s random(1, 50)
BEGIN;
SELECT ocx.append_event('acct-' || :s, NULL, 'Open', '{}');
SELECT pg_sleep(random() * 0.3);
SELECT ocx.append_event('other-' || :s, NULL, 'Open', '{}');
COMMIT;
},
	'late.sql' => q{
\set s random(1, 50)
BEGIN;
SELECT pg_sleep(random() * 0.05);
SELECT ocx.append('other-' || :s, NULL, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}]');
SELECT pg_sleep(random() * 0.1);
COMMIT;
},
	'xidfirst.sql' => q{
\set s random(1, 50)
SELECT xid_first(:s);
},
	'rollback.sql' => q{
\set s random(1, 50)
BEGIN;
SELECT ocx.append_event('acct-' || :s, NULL, 'Gone', '{}');
SELECT pg_sleep(random() * 0.02);
ROLLBACK;
},
);
my @f;
for my $name (sort keys %scripts)
{
	append_to_file("$dir/$name", $scripts{$name});
	my $w = { 'quick.sql' => 6, 'long.sql' => 3, 'late.sql' => 2, 'xidfirst.sql' => 2, 'rollback.sql' => 1 }->{$name};
	push @f, '-f', "$dir/$name\@$w";
}
my ($wout, $werr) = ('', '');
my $writers = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '8', '-j', '2', '-T', $seconds, @f,
	  '-h', $node->host, '-p', $node->port, 'postgres' ],
	'>', \$wout, '2>', \$werr);

# halfway, the holder ends and another takes an xid and holds it
sleep($seconds / 2);
$holder->query_safe(q{COMMIT});
$holder->query_safe(q{BEGIN});
$holder->query_safe(q{SELECT txid_current()});

$writers->finish;
is($writers->result(0), 0, 'the writers ran without errors') or diag($werr);
like($wout, qr/number of failed transactions: 0 /, 'no writer transaction failed') or diag($wout);
$holder->query_safe(q{COMMIT});
$holder->quit;

my $events = $node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events});
cmp_ok($events, '>', 100, "the writers appended ($events events)");
note('refused (OX013, retryable): ' . $node->safe_psql('postgres', q{SELECT count(*) FROM refused}));

$node->safe_psql('postgres', q{UPDATE ctl SET stop = true});
for my $c (@consumers)
{
	my ($name, $h, $out, $err) = @$c;
	my $t0 = time();
	while ($h->pumpable && time() - $t0 < 120)
	{
		$h->pump_nb;
		usleep(100_000);
	}
	$h->finish;
	is($h->result(0), 0, "consumer $name ended") or diag($$err);
}

for my $c ([ 'all_events', 'true' ], [ 'acct_only', q{ocx.category(e.stream_id) = 'acct'} ],
		   [ 'read_all_1000', 'true' ], [ 'read_all_37', 'true' ])
{
	my ($name, $filter) = @$c;
	my $res = $node->safe_psql('postgres', qq{
		WITH want AS (SELECT e.global_position AS pos FROM ocx.events e WHERE $filter),
		     have AS (SELECT g.pos FROM got g WHERE g.reader = '$name')
		SELECT (SELECT count(*) FROM want),
		       (SELECT count(*) FROM want w WHERE NOT EXISTS (SELECT 1 FROM have h WHERE h.pos = w.pos)),
		       (SELECT count(*) FROM (SELECT h.pos FROM have h GROUP BY h.pos HAVING count(*) > 1) d),
		       (SELECT count(*) FROM have h WHERE NOT EXISTS (SELECT 1 FROM want w WHERE w.pos = h.pos))
	});
	my ($want, $skipped, $twice, $extra) = split /\|/, $res;
	cmp_ok($want, '>', 0, "$name: $want events selected in the final log");
	is($skipped, 0, "$name: no event skipped");
	is($twice, 0, "$name: no event delivered twice");
	is($extra, 0, "$name: nothing delivered that is not in the log");
	is($node->safe_psql('postgres', qq{
		SELECT count(*) FROM (
			SELECT g.cur, lag(g.cur) OVER (ORDER BY g.seq) AS prev FROM got g WHERE g.reader = '$name') x
		 WHERE x.prev OPERATOR(ocx.>=) x.cur}), '0', "$name: delivered in log order");
}

$node->stop;
done_testing();
