# The direct write under concurrency (issue 16, src/directappend.c): four
# sessions at once, 400 appends each, with random expected versions (none,
# 0, a guess near the stream's version) to 12 shared streams, one or a few
# events per call, each event with an id naming its call.  Every call that
# succeeded (and only those) left its events: at the version it returned,
# consecutive per stream with no gap or duplicate, at expected + 1 when it
# gave an expected version; each stream row is at its last event; the hash
# chain verifies.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;
use IPC::Run;

my $seed = fuzz_seed();
my ($nsessions, $ncalls) = (4, 400);

my $node = PostgreSQL::Test::Cluster->new('direct_concurrency');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\n");
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION ocx});


# the calls: "op-S-N" names call N of session S; its events' ids carry S and N
my %expected;    # op => expected version (undef: none)
my %nevents;     # op => events in the call
my @scripts;
for my $s (1 .. $nsessions)
{
	my $sql = "\\set ON_ERROR_STOP 0\n";
	for my $n (1 .. $ncalls)
	{
		my $op = "op-$s-$n";
		my $stream = 'cc-' . int(rand(12));
		my $e = pick(undef, undef, 0, int(rand(40)), int(rand(40)));
		my $k = pick(1, 1, 1, 2, 3);
		$expected{$op} = $e;
		$nevents{$op} = $k;
		my $events = '[' . join(', ', map {
			sprintf('{"type": "A", "data": {"op": "%s"}, "id": "00000000-%04d-4000-8000-%06d%06d"}', $op, $s, $n, $_)
		} 1 .. $k) . ']';
		$sql .= "SELECT '$op:' || ocx.append('$stream', " . ($e // 'NULL') . ", '$events');\n";
	}
	push @scripts, $sql;
}

# the four sessions at once
my @runs;
for my $s (0 .. $nsessions - 1)
{
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
		'<', \$scripts[$s], '>', \$out, '2>', \$err);
	push @runs, [ $h, \$out, \$err ];
}
my %result;    # op => version returned
for my $r (@runs)
{
	$r->[0]->finish;
	for my $l (split /\n/, ${ $r->[1] })
	{
		$result{$1} = $2 if $l =~ /^(op-\d+-\d+):(\d+)$/;
	}
}
my $ok = scalar(keys %result);
diag("appends that succeeded: $ok of " . $nsessions * $ncalls);
cmp_ok($ok, '>', 200, 'many appends succeeded (and many conflicted)');

# every succeeded call's events, and nothing else
my %stored;    # op => [versions]
my $rows = $node->safe_psql('postgres', q{
SELECT data->>'op' || ' ' || stream_version || ' ' || stream_id FROM ocx.events WHERE stream_id LIKE 'cc-%'});
for my $l (split /\n/, $rows)
{
	my ($op, $v) = split / /, $l;
	push @{ $stored{$op} }, $v;
}
my @bad;
for my $op (sort keys %stored)
{
	push @bad, "$op is stored but its call failed" unless exists $result{$op};
}
for my $op (sort keys %result)
{
	my @v = sort { $a <=> $b } @{ $stored{$op} // [] };
	my $v = $result{$op};
	push @bad, "$op returned $v but stores versions @v"
	  unless @v == $nevents{$op} && $v[-1] == $v && $v[0] == $v - $nevents{$op} + 1;
	push @bad, "$op expected $expected{$op} and returned $v"
	  if defined $expected{$op} && $expected{$op} + $nevents{$op} != $v;
}
is(join("\n", @bad[ 0 .. ($#bad < 9 ? $#bad : 9) ]), '', 'every succeeded call stored its events at the versions it returned, and no failed call stored any');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM (SELECT stream_id, count(*) AS n, min(stream_version) AS lo, max(stream_version) AS hi,
                             count(DISTINCT stream_version) AS d
                        FROM ocx.events WHERE stream_id LIKE 'cc-%' GROUP BY stream_id) s
 WHERE lo <> 1 OR hi <> n OR d <> n}), '0', 'each stream holds versions 1..n, no gap, no duplicate');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM ocx.streams s
 WHERE s.stream_id LIKE 'cc-%'
   AND s.version <> (SELECT max(e.stream_version) FROM ocx.events e WHERE e.stream_id = s.stream_id)}),
	'0', 'each stream row is at its last event');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify()}), '0', 'ocx.verify() is clean');
cmp_ok($node->safe_psql('postgres', q{SELECT value FROM ocx.stats WHERE name = 'appends'}), '>=', $ok,
	'the appends are counted');

$node->stop;
done_testing();
