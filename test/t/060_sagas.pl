# Sagas end to end with the worker:
# (a) each example (orders, banking, notifications) runs to completion,
#     including the sagas that compensate;
# (b) a failure at every step of a 4-step saga: the completed steps are
#     compensated in reverse order, each exactly once;
# (c) a step timeout: the in-doubt step (its command ran) is compensated too;
# (d) kill -9 of the worker while sagas move between steps: after the
#     restart every saga completes, no step's command is sent or run twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $examples = $ENV{OCX_EXAMPLES} or plan skip_all => 'OCX_EXAMPLES is not set';

my $node = PostgreSQL::Test::Cluster->new('sagas');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '200ms'
restart_after_crash = on
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION ocx');

sub load_module
{
	my ($file) = @_;
	$node->command_ok(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-o', '/dev/null',
		  '-d', $node->connstr('postgres'), '-f', "$examples/$file" ],
		"load examples/$file");
}

sub settled
{
	my ($name, $count) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT count(*) = $count FROM ocx.saga_instances
		 WHERE saga_name = '$name' AND state IN ('completed', 'compensated', 'failed')});
}

# ---------------------------------------------------------------- (a)
load_module('orders.sql');
load_module('banking.sql');
load_module('notifications.sql');

$node->safe_psql('postgres', q{
INSERT INTO orders.stock VALUES ('widget', 10, 0), ('gadget', 1, 0);
INSERT INTO orders.wallets VALUES ('carol', 100), ('dave', 5);
SELECT orders.place_order('1', 'carol', 'widget', 3, 60);   -- confirmed
SELECT orders.place_order('2', 'dave', 'widget', 2, 40);    -- payment fails
SELECT orders.place_order('3', 'carol', 'gadget', 5, 10);   -- out of stock
SELECT orders.place_order('4', 'carol', 'widget', 0, 10);   -- rejected
SELECT orders.place_order('1', 'carol', 'widget', 3, 60);   -- a retry: no-op
});
ok(settled('order_fulfillment', 4), '(a) orders: every saga finished');
is($node->safe_psql('postgres', q{
	SELECT string_agg(i.input->>'order_id' || ':' || i.state, ' ' ORDER BY i.input->>'order_id')
	  FROM ocx.saga_instances i WHERE saga_name = 'order_fulfillment'}),
	'1:completed 2:compensated 3:compensated 4:compensated',
	'(a) orders: one confirmed, three compensated');
is($node->safe_psql('postgres', q{
	SELECT string_agg(type, ' > ' ORDER BY txid, global_position) FROM ocx.events WHERE stream_id = 'order-2'}),
	'OrderPlaced > InventoryReserved > PaymentFailed > InventoryReleased > OrderCancelled',
	'(a) orders: a payment failure releases the inventory, then cancels the order');
is($node->safe_psql('postgres', q{
	SELECT string_agg(type, ' > ' ORDER BY txid, global_position) FROM ocx.events WHERE stream_id = 'order-3'}),
	'OrderPlaced > InventoryRejected > OrderCancelled',
	'(a) orders: out of stock cancels the order');
is($node->safe_psql('postgres', q{SELECT string_agg(sku || '=' || on_hand || '/' || reserved, ' ' ORDER BY sku) FROM orders.stock}),
	'gadget=1/0 widget=7/0', '(a) orders: stock shipped for the confirmed order only, nothing left reserved');
ok($node->poll_query_until('postgres', q{
	SELECT string_agg(order_id || ':' || status, ' ' ORDER BY order_id) FROM orders.order_view},
	'1:confirmed 2:cancelled 3:cancelled 4:rejected'), '(a) orders: the projection shows each order');

$node->safe_psql('postgres', q{
SELECT bank.open_account('erin', 'Erin', 100), bank.open_account('frank', 'Frank', 20),
       bank.open_account('grace', 'Grace', 0);
SELECT bank.close_account('grace');
SELECT bank.transfer('T1', 'erin', 'frank', 30);
SELECT bank.transfer('T2', 'frank', 'erin', 500);
SELECT bank.transfer('T3', 'erin', 'grace', 25);
SELECT bank.transfer('T4', 'erin', 'nobody', 5);
});
ok(settled('transfer', 4), '(a) banking: every transfer finished');
is($node->safe_psql('postgres', q{
	SELECT string_agg(i.input->>'transfer_id' || ':' || i.state, ' ' ORDER BY i.input->>'transfer_id')
	  FROM ocx.saga_instances i WHERE saga_name = 'transfer'}),
	'T1:completed T2:compensated T3:compensated T4:compensated', '(a) banking: transfer states');
is($node->safe_psql('postgres', q{
	SELECT string_agg(type || ':' || coalesce(data->>'transfer_id', ''), ' ' ORDER BY type)
	  FROM ocx.events WHERE stream_id = 'bank_account-frank'}),
	'AccountOpened: Credited:T1 DebitRefused:T2 Deposited:', '(a) banking: the aggregate refuses an overdraft');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM ocx.events WHERE stream_id = 'bank_account-erin' AND type = 'Refunded'}),
	'2', '(a) banking: failed credits refund the source, once each');
ok($node->poll_query_until('postgres', q{
	SELECT string_agg(account || '=' || balance, ' ' ORDER BY account) FROM bank.balances},
	'erin=70 frank=50 grace=0'), '(a) banking: balances projection');
is($node->safe_psql('postgres', q{
	SELECT string_agg(account || '=' || ((bank.load(account)).state->>'balance'), ' ' ORDER BY account) FROM bank.balances}),
	'erin=70 frank=50 grace=0', '(a) banking: the projection equals the replayed aggregates');

$node->safe_psql('postgres', q{
SELECT notify.welcome('u1', 'u1@example.org', '555-0101');
SELECT notify.welcome('u2', 'u2@example.org', '555-0102', 'pager');
});
ok(settled('welcome', 2), '(a) notifications: both sagas finished');
is($node->safe_psql('postgres', q{
	SELECT string_agg(i.input->>'user_id' || ':' || i.state, ' ' ORDER BY i.input->>'user_id')
	  FROM ocx.saga_instances i WHERE saga_name = 'welcome'}),
	'u1:completed u2:compensated', '(a) notifications: saga states');
is($node->safe_psql('postgres', q{
	SELECT string_agg(c.data->>'channel' || ':' || c.status || ':' || c.attempts, ' ' ORDER BY c.data->>'user_id', c.seq)
	  FROM ocx.commands c WHERE c.type = 'notify.Send'}),
	'email:succeeded:1 sms:succeeded:3 email:succeeded:1 pager:dead_letter:4',
	'(a) notifications: the flaky SMS is retried until it works, the pager is dead-lettered after 4 attempts');
is($node->safe_psql('postgres', q{
	SELECT string_agg(x->>'event', ',') FROM ocx.command_status c, jsonb_array_elements(c.history) x
	 WHERE c.type = 'notify.Send' AND c.status = 'dead_letter'}),
	'sent,claimed,failed,claimed,failed,claimed,failed,claimed,dead_letter',
	'(a) notifications: each attempt is in the command history');
ok($node->poll_query_until('postgres', q{
	SELECT string_agg(user_id || ':' || channel || ':' || retracted, ' ' ORDER BY user_id, channel) FROM notify.outbox},
	'u1:email:false u1:sms:false u2:email:true'), '(a) notifications: the e-mail of the failed saga is retracted');

# ---------------------------------------------------------------- (b), (c)
$node->safe_psql('postgres', q{
CREATE TABLE effects (n bigserial, saga uuid, step int, kind text);
CREATE FUNCTION do_step(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (saga, step, kind) VALUES (c.correlation_id, (c.data->>'step')::int, 'do');
    IF (c.data->>'sleep') IS NOT NULL THEN
        PERFORM pg_sleep((c.data->>'sleep')::float8);
    END IF;
    IF (c.data->>'fail_at')::int = (c.data->>'step')::int THEN
        PERFORM ocx.append_event('t-' || c.correlation_id, NULL, 'StepFailed', c.data);
    ELSIF (c.data->>'hang_at')::int = (c.data->>'step')::int THEN
        NULL;   -- never answers
    ELSE
        PERFORM ocx.append_event('t-' || c.correlation_id, NULL, 'StepDone', c.data);
    END IF;
    RETURN NULL;
END $$;
CREATE FUNCTION undo_step(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO effects (saga, step, kind) VALUES (c.correlation_id, (c.data->>'step')::int, 'undo');
    RETURN NULL;
END $$;
SELECT ocx.define_command_handler('T.Do', 'do_step(ocx.command)');
SELECT ocx.define_command_handler('T.Undo', 'undo_step(ocx.command)');
SELECT ocx.define_saga('four', (SELECT jsonb_build_object('steps', jsonb_agg(jsonb_build_object(
    'name', 's' || k, 'command', 'T.Do',
    'data', jsonb_build_object('step', k, 'fail_at', '$.input.fail_at', 'hang_at', '$.input.hang_at',
                               'sleep', '$.input.sleep'),
    'success', 'StepDone', 'failure', 'StepFailed',
    'compensation', jsonb_build_object('command', 'T.Undo', 'data', jsonb_build_object('step', k))) ORDER BY k))
  FROM generate_series(1, 4) k));
SELECT ocx.define_saga('four_t', (SELECT jsonb_set(definition, '{steps,2,timeout}', '"1 second"')
                                    FROM ocx.saga_definitions WHERE name = 'four'));
});

for my $k (1 .. 4)
{
	my $id = sprintf('00000000-0000-4000-8000-%012d', $k);
	$node->safe_psql('postgres', qq{SELECT ocx.start_saga('four', '{"fail_at": $k}', '$id')});
}
ok(settled('four', 4), '(b) four sagas, each failing at another step, finished');
for my $k (1 .. 4)
{
	my $id = sprintf('00000000-0000-4000-8000-%012d', $k);
	my $undo = join(',', reverse(1 .. $k - 1));
	is($node->safe_psql('postgres', qq{
		SELECT state || ' do=' || (SELECT string_agg(step::text, ',' ORDER BY n) FROM effects WHERE saga = '$id' AND kind = 'do')
		       || ' undo=' || coalesce((SELECT string_agg(step::text, ',' ORDER BY n) FROM effects WHERE saga = '$id' AND kind = 'undo'), '')
		       || ' sent=' || coalesce((SELECT string_agg(step::text, ',' ORDER BY id) FROM ocx.saga_steps
		                                 WHERE saga_id = '$id' AND action = 'compensation_sent'), '')
		  FROM ocx.saga_instances WHERE saga_id = '$id'}),
		"compensated do=" . join(',', 1 .. $k) . " undo=$undo sent=$undo",
		"(b) failure at step $k: steps 1..$k ran once, compensations in reverse order ($undo), each once");
}

$node->safe_psql('postgres', q{SELECT ocx.start_saga('four_t', '{"hang_at": 3}', '00000000-0000-4000-8000-000000000099')});
ok(settled('four_t', 1), '(c) the saga whose step 3 never answers finished');
is($node->safe_psql('postgres', q{
	SELECT state || ' ' || (SELECT string_agg(action, ',' ORDER BY id) FROM ocx.saga_steps s
	                          WHERE s.saga_id = i.saga_id AND s.step = 3)
	       || ' undo=' || (SELECT string_agg(step::text, ',' ORDER BY n) FROM effects WHERE saga = i.saga_id AND kind = 'undo')
	  FROM ocx.saga_instances i WHERE saga_id = '00000000-0000-4000-8000-000000000099'}),
	'compensated step_sent,step_timed_out,compensation_sent,compensation_succeeded undo=3,2,1',
	'(c) a timed-out step whose command ran is compensated first, then the others in reverse order');

# ---------------------------------------------------------------- (d)
my $n = 40;
$node->safe_psql('postgres', qq{
	SELECT ocx.start_saga('four', '{"sleep": 0.01}', ('00000000-0000-4000-9000-' || lpad(k::text, 12, '0'))::uuid)
	  FROM generate_series(1, $n) k});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) > 20 FROM ocx.saga_steps s JOIN ocx.saga_instances i USING (saga_id)
	 WHERE i.saga_name = 'four' AND i.saga_id::text LIKE '00000000-0000-4000-9000-%' AND s.action = 'step_succeeded'}),
	'(d) sagas are moving');
my $before = $node->safe_psql('postgres', q{
	SELECT count(*) FROM ocx.saga_instances WHERE saga_id::text LIKE '00000000-0000-4000-9000-%' AND state = 'completed'});
# kill the process running a batch of commands or of saga events while that batch's
# transaction has written (backend_xid set): read the pid and kill it at once
my $pid = '';
for (1 .. 600)
{
	$pid = $node->safe_psql('postgres', q{
		SELECT pid FROM pg_stat_activity
		 WHERE backend_type IN ('ocx worker', 'ocx worker helper') AND datname = 'postgres'
		   AND state = 'active' AND query IN ('ocx worker: commands', 'ocx worker: sagas')
		   AND backend_xid IS NOT NULL LIMIT 1});
	last if $pid ne '';
	usleep(10_000);
}
ok($pid =~ /^\d+$/, "(d) a process is in the middle of a saga or command batch that has written ($pid)");
kill 'KILL', $pid;
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = $n FROM ocx.saga_instances WHERE saga_id::text LIKE '00000000-0000-4000-9000-%' AND state = 'completed'}),
	"(d) after kill -9 ($before of $n were complete) every saga completes");
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(DISTINCT (saga, step)) FROM effects
	 WHERE saga::text LIKE '00000000-0000-4000-9000-%' AND kind = 'do'}),
	(4 * $n) . ' ' . (4 * $n), '(d) every step ran exactly once');
# A step's command id is derived from (saga, step) and the queue ignores a second
# insert of the same id, so ocx.commands cannot show a double send: count the sends
# the saga task recorded (one step_sent per send, in the sending transaction).
is($node->safe_psql('postgres', q{
	SELECT count(*) || ' ' || count(DISTINCT (saga_id, step)) || ' ' || count(DISTINCT command_id)
	  FROM ocx.saga_steps
	 WHERE saga_id::text LIKE '00000000-0000-4000-9000-%' AND action = 'step_sent'}),
	(4 * $n) . ' ' . (4 * $n) . ' ' . (4 * $n), '(d) every step command was sent exactly once');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM ocx.commands WHERE correlation_id::text LIKE '00000000-0000-4000-9000-%'}),
	4 * $n, '(d) every sent step command is in the queue');
is($node->safe_psql('postgres', q{
	SELECT string_agg(DISTINCT (SELECT string_agg(action, ',' ORDER BY id) FROM ocx.saga_steps s WHERE s.saga_id = i.saga_id), ' | ')
	  FROM ocx.saga_instances i WHERE saga_id::text LIKE '00000000-0000-4000-9000-%'}),
	'started,step_sent,step_succeeded,step_sent,step_succeeded,step_sent,step_succeeded,step_sent,step_succeeded,completed',
	'(d) every saga has the same clean timeline');
like($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ocx worker'}),
	qr/^1$/, '(d) the worker is back');

$node->stop;
done_testing();
