# Differential test of aggregate replay: the same 1,500 seeded random
# operations (appends of current and old-schema events that an upcaster
# brings up, snapshots, ocx.load at the head, at a past version and at a
# past time) in a database where ocx.load scans the log directly, one where
# personal data is defined for another type (ocx.load then reads through
# its kept plans, which reveal), and one with a partitioned log.  Every
# operation ends the same way in all three (the state and version it
# returns, or its SQLSTATE).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;
use OcxPrivacy;

my $seed = fuzz_seed();
my $nops = 1500;
my @dbs = ('scan', 'plans', 'parted');

my $node = privacy_node('load_differential');
$node->safe_psql('postgres', "CREATE DATABASE $_") for @dbs;
for my $db (@dbs)
{
	$node->safe_psql($db, q{
CREATE EXTENSION ocx;
CREATE FUNCTION acc_apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF (e.data->>'n')::numeric < 0 THEN
        RAISE EXCEPTION 'negative at version %', e.stream_version;
    END IF;
    RETURN state || jsonb_build_object('sum', coalesce((state->>'sum')::numeric, 0) + coalesce((e.data->>'n')::numeric, 0),
                                       'count', coalesce((state->>'count')::int, 0) + 1,
                                       'last', e.type || '@' || e.schema_version,
                                       'units', coalesce(e.data->>'unit', state->>'units'));
END $$;
SELECT ocx.define_event_type('acc.Moved', 2);
-- version 1 stored the amount as "amount" in cents; version 2 as "n" with a unit
SELECT ocx.define_upcaster('acc.Moved', 1, spec => '[{"op": "rename", "from": "amount", "to": "n"}, {"op": "default", "path": "unit", "value": "cent"}]');
SELECT ocx.define_aggregate('acc', 'acc_apply(jsonb, ocx.event)', '{"sum": 0}', snapshot_every => 7);
});
	$node->safe_psql($db, $RUN_SQL);
}
$node->safe_psql('plans', q{SELECT ocx.define_personal_data('other.Type', 'subject', '{email}')});
$node->safe_psql('parted', q{SELECT ocx.partition_log(500, 10)});


my @ops;
my $t = 0;
for (1 .. $nops)
{
	my $stream = 'acc-' . int(rand(40));
	my $r = rand();
	$t++;
	if ($r < 0.6)
	{
		my @events = map {
			my $ts = sprintf('2024-01-%02dT%02d:%02d:00Z', 1 + int($t / 1440) % 28, int($t / 60) % 24, $t % 60);
			# now and then an event the apply function refuses: the stream's
			# later loads fail (OX103), at its earlier versions they do not
			rand() < 0.01 ? '{"type": "acc.Moved", "data": {"n": -1}, "time": "' . $ts . '"}'
			: pick('{"type": "acc.Moved", "schema_version": 1, "data": {"amount": ' . int(rand(500)) . '}, "time": "' . $ts . '"}',
				'{"type": "acc.Moved", "data": {"n": ' . int(rand(500)) . ', "unit": "eur"}, "time": "' . $ts . '"}',
				'{"type": "acc.Noted", "data": {"text": "x"}, "time": "' . $ts . '"}')
		} 1 .. pick(1, 1, 3);
		push @ops, "SELECT ocx.append('$stream', NULL, '[" . join(', ', @events) . "]')::text";
	}
	elsif ($r < 0.7)
	{
		push @ops, "SELECT ocx.snapshot('acc', '$stream')::text";
	}
	else
	{
		my $as_of = pick('', '', ', as_of_version => ' . int(rand(12)),
			", as_of_time => '" . sprintf('2024-01-01T%02d:%02d:30Z', int(rand($t / 60 + 1)) % 24, int(rand(60))) . "'");
		push @ops, "SELECT format('%s v%s', l.state, l.version) FROM ocx.load('acc', '$stream'$as_of) l";
	}
}
my $script = join('', map { my $o = $_; $o =~ s/'/''/g; "SELECT run('$o');\n" } @ops);
my %out;
for my $db (@dbs)
{
	$out{$db} = [ split /\n/, $node->safe_psql($db, $script) ];
	is(scalar(@{ $out{$db} }), $nops, "every operation answered in \"$db\"");
}
my (@mismatch, %kinds);
for my $i (0 .. $nops - 1)
{
	my $a = $out{scan}[$i];
	$kinds{ $a =~ /^\{/ ? 'state' : $a =~ /^\d+$/ ? 'number' : $a }++;
	for my $db ('plans', 'parted')
	{
		push @mismatch, "operation " . ($i + 1) . ": $ops[$i]\n  scan: $a\n  $db: $out{$db}[$i]" if $a ne $out{$db}[$i];
	}
}
diag('outcomes: ' . join(', ', map { "$_ x$kinds{$_}" } sort keys %kinds));
is(join("\n", @mismatch[ 0 .. ($#mismatch < 4 ? $#mismatch : 4) ]), '',
	'every append, snapshot and load ends the same way on the three paths');
cmp_ok($kinds{state} // 0, '>', 200, 'many loads returned a state');

$node->stop;
done_testing();
