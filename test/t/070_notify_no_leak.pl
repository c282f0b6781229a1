# NOTIFY leaks nothing (issue 10, item 5): any role can LISTEN on any channel,
# so a login role with no ocx role that listens on ocx_events (and on a
# category channel it guessed) is woken up by an append, but the payloads
# name no stream and no event type: only a cursor and a count.  Both the
# worker's batched wake-ups and ocx.notify_mode = immediate are checked.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('notify');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
});
$node->start;
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE ROLE outsider LOGIN;
});

# the database's worker sends the batched wake-ups
my $deadline = time() + 60;
while ($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ocx worker' AND datname = 'postgres'}) eq '0')
{
	die "the ocx worker did not start" if time() > $deadline;
	usleep(100_000);
}

my $bg = $node->background_psql('postgres', extra_params => [ '-U', 'outsider' ]);
is($bg->query_safe(q{SELECT current_user, pg_has_role('ocx_reader', 'MEMBER')}), 'outsider|f',
	'the listener is a login role with no ocx role');
$bg->query_safe(q{LISTEN ocx_events});
$bg->query_safe(q{LISTEN "ocx_acme.payroll"});

# Run a trivial query in the listener until psql has printed a notification
# on channel; returns everything psql printed meanwhile.
sub wait_for_notification
{
	my ($channel) = @_;
	my $out = '';
	my $until = time() + 60;
	while ($out !~ /Asynchronous notification "\Q$channel\E"/)
	{
		return $out if time() > $until;
		usleep(100_000);
		$out .= $bg->query_safe(q{SELECT 1}) . "\n";
	}
	return $out;
}

# the payloads psql printed for channel
sub payloads
{
	my ($out, $channel) = @_;
	return join "\n",
	  $out =~ /Asynchronous notification "\Q$channel\E" with payload "(.*)" received/g;
}

$node->safe_psql('postgres', q{
SET ocx.tenant = 'acme';
SELECT ocx.append_event('acme.payroll-ceo', 0, 'SalarySet', '{"amount": 1000000}');
});

my $out = wait_for_notification('ocx_acme.payroll');
$out .= wait_for_notification('ocx_events') unless $out =~ /notification "ocx_events"/;
my $events = payloads($out, 'ocx_events');
my $category = payloads($out, 'ocx_acme.payroll');
like($events, qr/"cursor": "\d+\/\d+".*"count": 1/, 'the outsider is woken up on ocx_events, with a cursor and a count');
like($category, qr/"cursor": "\d+\/\d+".*"count": 1/, 'and on the category channel it guessed');
unlike("$events\n$category", qr/acme\.payroll-ceo/, 'the payloads do not name the stream');
unlike("$events\n$category", qr/SalarySet/, 'the payloads do not name the event type');
unlike("$events\n$category", qr/1000000|amount/, 'the payloads carry no event data');

# immediate mode notifies from the appending transaction: the same rule
$node->safe_psql('postgres', q{
SET ocx.tenant = 'acme';
SET ocx.notify_mode = immediate;
SELECT ocx.append_event('acme.payroll-ceo', 1, 'SalarySet', '{"amount": 2000000}');
});
$out = '';
my $until = time() + 60;
while ($out !~ /"immediate": true/ && time() < $until)
{
	$out .= wait_for_notification('ocx_events');
}
my ($immediate) = grep { /"immediate": true/ } split /\n/, payloads($out, 'ocx_events');
ok(defined $immediate, 'ocx.notify_mode = immediate wakes the outsider too');
$immediate //= '';
unlike($immediate, qr/acme\.payroll-ceo|SalarySet|2000000/,
	'its payload names no stream and no type either');

$bg->quit;
$node->stop;
done_testing();
