# Read-your-writes (issue 12): ocx.wait_for returns true once the projection
# has applied the session's last append, woken by the worker's latch; false
# after the timeout when it has not; refuses to wait inside the appending
# transaction or in a projection handler; readers may call it; a wait ended
# by a cancel, a timeout or a terminated backend leaves no slot behind in the
# waiter table.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('wait_for');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '10s'
});
$node->start;

# The handler takes 200 ms, so the read model lags the commit visibly.
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE TABLE model (pos bigint PRIMARY KEY);
CREATE FUNCTION apply(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'Slow' THEN
        PERFORM pg_sleep(0.2);
    END IF;
    INSERT INTO public.model VALUES (e.global_position);
END $$;
SELECT ocx.define_projection('model', 'apply(ocx.event)', categories => '{acct}');
CREATE ROLE app_reader LOGIN IN ROLE ocx_reader;
GRANT SELECT ON model TO app_reader;
});

# 1. append and commit, then wait in the same session: true, and the read
#    model has the event on return (it did not before the wait)
my $out = $node->safe_psql('postgres', q{
BEGIN;
SELECT ocx.append_event('acct-1', NULL, 'Slow', '{}');
COMMIT;
SELECT ocx.last_append_cursor();
SELECT count(*) FROM model WHERE pos = ocx.global_position(ocx.last_append_cursor());
SELECT ocx.wait_for('model', ocx.last_append_cursor(), '5s');
SELECT count(*) FROM model WHERE pos = ocx.global_position(ocx.last_append_cursor());
});
my ($version, $cursor, $before, $waited, $after) = split /\n/, $out;
like($cursor, qr{^\d+/\d+$}, 'last_append_cursor returns the cursor of the append');
is($before, '0', 'the read model lags the commit (the handler takes 200 ms)');
is($waited, 't', 'wait_for returns true within its timeout');
is($after, '1', 'on return the read model has the event');

# 2. a reader role may wait for a cursor a writer handed it
$out = $node->safe_psql('postgres',
	qq{SELECT ocx.wait_for('model', '$cursor', '5s'); SELECT count(*) FROM model},
	extra_params => [ '-U', 'app_reader' ]);
is($out, "t\n1", 'an ocx_reader may call wait_for and then read the model');

# 3. in the appending transaction it can never succeed: refused at once
my $t0 = time;
my ($rc, $stdout, $stderr) = $node->psql('postgres', q{
BEGIN;
SELECT ocx.append_event('acct-2', NULL, 'Fast', '{}');
SELECT ocx.wait_for('model', ocx.last_append_cursor(), '5s');
COMMIT;
}, on_error_stop => 1);
ok($rc != 0 && $stderr =~ /cannot wait for an event of the current transaction/,
	'wait_for in the appending transaction raises');
cmp_ok(time - $t0, '<', 3, '... without waiting for the timeout');

# 4. paused: false after the timeout, not before and not much later
$node->safe_psql('postgres', q{SELECT ocx.pause_projection('model')});
$t0 = time;
$out = $node->safe_psql('postgres', q{
SELECT ocx.append_event('acct-3', NULL, 'Fast', '{}');
SELECT ocx.wait_for('model', ocx.last_append_cursor(), '300ms');
});
my $elapsed = time - $t0;
is((split /\n/, $out)[1], 'f', 'paused projection: wait_for returns false');
cmp_ok($elapsed, '>=', 0.3, "... after the timeout ($elapsed s)");
cmp_ok($elapsed, '<', 3, '... and not much later');

# 5. waits that end early leave no slot behind: 150 waits cancelled by
#    statement_timeout (more than the table's 128 slots) in a session that
#    stays connected through the round trips of 6 (a leaked slot stays taken
#    while its backend lives: a full table would leave those waits to the
#    100 ms poll), and one backend terminated while it waits
my $canceller = $node->background_psql('postgres', on_error_stop => 0);
$canceller->query("SET statement_timeout = '20ms';\n"
	  . "SELECT ocx.wait_for('model', ocx.cursor(ocx.log_horizon(), 0), '10s');\n" x 150);
my $cancelled = () = $canceller->{stderr} =~ /canceling statement due to statement timeout/g;
is($cancelled, 150, '150 waits cancelled by statement_timeout');
my $bg = $node->background_psql('postgres', on_error_stop => 0);
$bg->query_until(qr/waiting/, q{
\echo waiting
SELECT ocx.wait_for('model', ocx.cursor(ocx.log_horizon(), 0), '60s');
});
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE 'SELECT ocx.wait_for(%' AND wait_event = 'Extension'}),
	'a backend waits in wait_for');
$node->safe_psql('postgres', q{
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT ocx.wait_for(%'});
eval { $bg->quit; };
ok($node->poll_query_until('postgres', q{
SELECT count(*) = 0 FROM pg_stat_activity WHERE query LIKE 'SELECT ocx.wait_for(%'}),
	'... and is terminated');
$node->safe_psql('postgres', q{SELECT ocx.resume_projection('model')});

# 6. woken by the latch: round trips append -> commit -> wait_for, each in
#    its own transaction.  The waiter polls every 100 ms when not woken, so
#    without the worker's wake-up (or with the table full of leaked slots)
#    the median would be 50 ms or more.
$node->safe_psql('postgres', q{
CREATE PROCEDURE round_trips(n int, INOUT ms float8[] DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
BEGIN
    ms := '{}';
    FOR i IN 1..n LOOP
        PERFORM ocx.append_event('acct-rt', NULL, 'Fast', '{}');
        COMMIT;
        t0 := clock_timestamp();
        IF NOT ocx.wait_for('model', ocx.last_append_cursor(), '5s') THEN
            RAISE EXCEPTION 'wait_for timed out';
        END IF;
        ms := ms || (EXTRACT(epoch FROM clock_timestamp() - t0) * 1000)::float8;
        COMMIT;
    END LOOP;
END $$;
});
$node->safe_psql('postgres', q{CALL round_trips(3)});	# warm up
my $ms = $node->safe_psql('postgres', q{CALL round_trips(31)});
$ms =~ s/[{}]//g;
my @sorted = sort { $a <=> $b } split /,/, $ms;
my $median = $sorted[ int(@sorted / 2) ];
note "append -> wait_for, ms: median $median, max $sorted[-1]";
is(scalar @sorted, 31, '31 round trips, each wait_for true');
cmp_ok($median, '<', 40, "woken by the worker, not by the 100 ms poll (median $median ms)");

my $count = $node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM model) = (SELECT count(*) FROM ocx.events WHERE stream_id LIKE 'acct-%')});
is($count, 't', 'the read model has every event');
$canceller->quit;

# 7. a projection handler cannot wait: the worker would wait for itself
$node->safe_psql('postgres', q{
CREATE FUNCTION waiting_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.wait_for('waiter', e.cursor, '10s');
END $$;
SELECT ocx.define_projection('waiter', 'waiting_handler(ocx.event)', categories => '{wt}',
                             retry => '{"max_attempts": 1}');
SELECT ocx.append_event('wt-1', NULL, 'Fast', '{}');
});
ok($node->poll_query_until('postgres', q{
SELECT string_agg(sqlstate, ',') = 'OX230' FROM ocx.dead_letters WHERE projection = 'waiter'}),
	'wait_for in a projection handler fails with OX230 (the event is parked)');

$node->stop;
done_testing();
