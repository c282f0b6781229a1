# Differential test of the direct write (issue 16, src/directappend.c): the
# same 2,000 seeded random operations (append and append_event with expected
# versions right, wrong, NULL and 0; append_if with tag conditions; reads;
# events with and without ids, tags,
# metadata, sources, correlation and causation; idempotent retries and ids
# reused with another payload; two tenants; soft and hard deletes) run in a
# database where appends take the direct path and in one where every append
# takes the SQL statement (default_transaction_isolation = repeatable read,
# which the direct path leaves to the statement), and in one whose log is
# partitioned (ocx.partition_log: statements, and ids unique across
# partitions by locks of ocx's own), and in one where the statements run
# under READ COMMITTED (ocx.notify_mode = immediate: a statement trigger
# that the direct path leaves to them).  Each operation must end
# the same way in both (its result or its SQLSTATE), and the two logs must
# hold the same events field for field, with the same hash chain.
# Replay with OCX_FUZZ_SEED=<seed>.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;

my $seed = fuzz_seed();
my $nops = $ENV{OCX_DIFFERENTIAL_OPS} // 2000;
diag("ocx direct/statement differential seed: $seed (replay: OCX_FUZZ_SEED=$seed), operations: $nops");

my $node = PostgreSQL::Test::Cluster->new('direct_differential');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\n");
$node->start;
$node->safe_psql('postgres', q{
CREATE DATABASE direct;
CREATE DATABASE stmt;
CREATE DATABASE parted;
CREATE DATABASE rcstmt;
-- the statements under READ COMMITTED: a statement trigger the direct path leaves alone
ALTER DATABASE rcstmt SET ocx.notify_mode = 'immediate';
ALTER DATABASE stmt SET default_transaction_isolation = 'repeatable read';
});
for my $db ('direct', 'stmt', 'parted', 'rcstmt')
{
	$node->safe_psql($db, q{
CREATE EXTENSION ocx;
SELECT ocx.define_event_type('Typed', 2, '{"type": "object", "required": ["n"]}');
});
	$node->safe_psql($db, $RUN_SQL);
	# Reads through the log horizon (read_all, read_category, read_tagged)
	# show an event once every transaction that began before it has ended,
	# in any database: an autovacuum ANALYZE or another transaction of the
	# cluster running across a batch can hold them back in one database and
	# not in another.  Before such a read each database waits (up to 10 s,
	# each try in a new transaction and snapshot) until the horizon has
	# passed every event it holds; after that the read must be complete.
	$node->safe_psql($db, q{
CREATE PROCEDURE wait_horizon() LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1 .. 200 LOOP
        EXIT WHEN ocx.log_horizon() > coalesce((SELECT max(txid) FROM ocx.events), '0'::xid8);
        COMMIT;
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
GRANT EXECUTE ON PROCEDURE wait_horizon() TO PUBLIC;
});
}
# a partitioned log (statements, and ids unique across partitions by locks of their own)
$node->safe_psql('parted', q{SELECT ocx.partition_log(1000, 10)});
# (the roles of ocx exist once the extension does)
$node->safe_psql('postgres', q{
CREATE ROLE dw LOGIN IN ROLE ocx_writer;
CREATE ROLE dadmin LOGIN IN ROLE ocx_admin;
});

my @ids = map { sprintf('00000000-0000-4000-8000-%012d', $_) } 1 .. 400;
my %version;    # stream => its version as far as the operations know

sub event
{
	my @f = ('"type": ' . pick('"A"', '"B"', '"Typed"'),
		'"data": ' . pick('{}', '{"n": 1}', '{"n": "x", "s": "é"}', '{"k": [1, 2, {"z": null}]}', '{"n": ' . int(rand(100)) . '}'),
		'"time": "2024-0' . (1 + int(rand(9))) . '-1' . int(rand(9)) . 'T10:00:00.' . sprintf('%06d', int(rand(1e6))) . 'Z"');
	push @f, '"id": "' . pick(@ids) . '"' if chance(0.6);
	push @f, '"metadata": ' . pick('{}', '{"m": 1}', '{"who": "x"}') if chance(0.4);
	push @f, '"source": ' . pick('"/a"', '"/b"') if chance(0.3);
	push @f, '"correlation_id": "' . pick(@ids) . '"' if chance(0.2);
	push @f, '"causation_id": "' . pick(@ids) . '"' if chance(0.2);
	push @f, '"tags": [' . join(', ', map { '"t' . int(rand(8)) . '"' } 0 .. int(rand(3))) . ']' if chance(0.3);
	push @f, '"schema_version": ' . (1 + int(rand(2))) if chance(0.2);
	return '{' . join(', ', @f) . '}';
}

my $tenant = '';
sub operation
{
	# mostly the streams of the batch's tenant, now and then another's (OX012)
	my $owner = chance(0.9) ? $tenant : pick('', 'acme', 'globex');
	my $stream = ($owner eq '' ? '' : "$owner.") . pick('acct', 'order', 'x') . '-' . int(rand(25));
	my $v = $version{$stream} // 0;
	my $expected = pick('NULL', 'NULL', $v, $v, 0, $v + 1, $v > 0 ? $v - 1 : 'NULL');
	my $r = rand();
	if ($r < 0.04)
	{
		return "SELECT ocx.delete_stream(" . sq($stream) . ", $expected, " . pick('false', 'true') . ")::text";
	}
	if ($r < 0.10)
	{
		# a read: the same events in the same order (positions and txids differ)
		my $cols = q{string_agg(format('%s/%s %s %s', stream_id, stream_version, type, data), ', ')};
		return pick(
			"SELECT coalesce($cols, '') FROM ocx.read_stream(" . sq($stream) . ")",
			"SELECT coalesce($cols, '') FROM ocx.read_stream(" . sq($stream) . ", 2, 2, 'backward')",
			"SELECT coalesce($cols, '') FROM ocx.read_tagged('{t" . int(rand(8)) . "}', max_count => 100000)",
			"SELECT coalesce($cols, '') FROM ocx.read_category(" . sq(pick('acct', 'order', 'x', 'acme.acct', 'globex.order')) . ", max_count => 100000)",
			"SELECT coalesce($cols, '') FROM ocx.read_all(max_count => 100000)",
			"SELECT coalesce(format('%s/%s %s', stream_id, stream_version, type), 'none') FROM ocx.last_event(" . sq($stream) . ")",
			"SELECT ocx.stream_version(" . sq($stream) . ")::text");
	}
	if ($r < 0.20)
	{
		# a decision: append only if no event with these tags (and type) is in the
		# log; the cursor it returns differs between the databases, not whether
		my $cond = '{"tags": [' . join(', ', map { '"t' . int(rand(8)) . '"' } 0 .. int(rand(2))) . ']'
		  . (rand() < 0.5 ? ', "types": ["' . pick('A', 'B', 'Typed') . '"]' : '') . '}';
		my $ev = event();
		$ev =~ s/^\{/{"stream_id": "$stream", /;
		return "SELECT (ocx.append_if(" . sq($ev) . ", " . sq($cond) . ") IS NOT NULL)::text";
	}
	if ($r < 0.45)
	{
		my @f = (sq($stream), $expected, pick("'A'", "'Typed'"), pick("'{}'", "'{\"n\": 2}'"));
		push @f, pick("'{}'", "'{\"m\": 2}'") if chance(0.5) || @f > 4;
		push @f, sq(pick(@ids)) if chance(0.4) && @f == 5;
		return "SELECT ocx.append_event(" . join(', ', @f) . ")::text";
	}
	my $events = chance(0.5) ? event() : '[' . join(', ', map { event() } 1 .. (1 + int(rand(5)))) . ']';
	return "SELECT ocx.append(" . sq($stream) . ", $expected, " . sq($events) . ")::text";
}

my (@mismatch, %outcomes);
my @ops;
my $batch = 100;
for (my $i = 0; $i < $nops; $i += $batch)
{
	my $last = $i + $batch - 1 < $nops - 1 ? $i + $batch - 1 : $nops - 1;
	my $role = pick('postgres', 'dw', 'dadmin');
	$tenant = pick('', 'acme', 'globex');
	for ($i .. $last)
	{
		my $op = operation();
		# a retry of the last append now and then (the same ids: idempotent, or a conflict)
		$op = $ops[-1] if @ops && chance(0.05) && $ops[-1] =~ /ocx\.append/;
		push @ops, $op;
	}
	my $script = "\\set QUIET on\n" . ($tenant ne '' ? "SET ocx.tenant = '$tenant';\n" : '')
	  . join('', map { ($ops[$_] =~ /ocx\.read_(all|category|tagged)\(/ ? "CALL wait_horizon();\n" : '')
			  . "SELECT run(" . sq($ops[$_]) . ");\n" } $i .. $last);
	my %out;
	for my $db ('direct', 'stmt', 'parted', 'rcstmt')
	{
		my ($stdout, $stderr);
		$node->psql($db, $script, stdout => \$stdout, stderr => \$stderr,
			extra_params => [ '-U', $role, '-At' ], on_error_stop => 1);
		$out{$db} = [ split /\n/, $stdout ];
		die "no answer from $db: $stderr" unless @{ $out{$db} } == $last - $i + 1;
	}
	for my $k (0 .. $last - $i)
	{
		my ($d, $s) = ($out{direct}[$k], $out{stmt}[$k]);
		push @mismatch, "operation " . ($i + $k + 1) . " ($role, tenant '$tenant'): $ops[$i + $k]\n  direct: $d\n  partitioned: $out{parted}[$k]"
		  if $d ne $out{parted}[$k];
		push @mismatch, "operation " . ($i + $k + 1) . " ($role, tenant '$tenant'): $ops[$i + $k]\n  direct: $d\n  read committed statement: $out{rcstmt}[$k]"
		  if $d ne $out{rcstmt}[$k];
		$outcomes{ $d =~ /^\d+$/ ? 'version' : length($d) > 8 ? 'read' : $d }++;
		if ($d ne $s)
		{
			push @mismatch, "operation " . ($i + $k + 1) . " ($role, tenant '$tenant'): $ops[$i + $k]\n  direct: $d\n  statement: $s";
			if ($ENV{OCX_DEBUG} && @mismatch == 1)
			{
				my ($sid) = $ops[$i + $k] =~ /ocx\.append\w*\('([^']+)'/;
				my @uuids = $ops[$i + $k] =~ /(00000000-0000-4000-8000-\d{12})/g;
				my $in = join(', ', map { "'$_'" } @uuids) || "'00000000-0000-0000-0000-000000000000'";
				for my $db ('direct', 'stmt')
				{
					diag("$db: " . $node->safe_psql($db, qq{
SELECT string_agg(format('%s/%s %s %s %s', stream_id, stream_version, event_id, source, tenant_id), '; ') FROM ocx.events
 WHERE stream_id = '$sid' OR event_id IN ($in)})
					  . ' | streams: ' . $node->safe_psql($db, qq{SELECT format('%s %s %s %s', stream_id, version, deleted, tenant_id) FROM ocx.streams WHERE stream_id = '$sid'}));
				}
				for my $db ('direct', 'stmt')
				{
					my ($o, $e);
					$node->psql($db, ($tenant ne '' ? "SET ocx.tenant = '$tenant';\n" : '') . "$ops[$i + $k];",
						stdout => \$o, stderr => \$e, extra_params => [ '-U', $role ]);
					diag("$db again: $o $e");
				}
			}
		}
		if ($d =~ /^\d+$/ && $ops[$i + $k] =~ /ocx\.append\w*\('([^']+)'/)
		{
			$version{$1} = $d;
		}
	}
}
diag('outcomes: ' . join(', ', map { "$_ x$outcomes{$_}" } sort keys %outcomes));

is(join("\n", @mismatch[ 0 .. ($#mismatch < 4 ? $#mismatch : 4) ]), '', 'every operation ends the same way on both paths');
my $rows = q{
SELECT format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', stream_id, stream_version,
              CASE WHEN event_id::text LIKE '00000000-0000-4000-8000-%' THEN event_id::text END, source, type,
              schema_version, CASE WHEN time < '2025-01-01' THEN time::text END, data, metadata,
              correlation_id, causation_id, tags, tenant_id,
              CASE WHEN NOT EXISTS (SELECT FROM ocx.events p WHERE p.stream_id = e.stream_id
                                      AND p.stream_version <= e.stream_version
                                      AND (p.event_id::text NOT LIKE '00000000-0000-4000-8000-%'
                                           OR p.time >= '2025-01-01'))
                   THEN encode(hash, 'hex') END)
  FROM ocx.events e ORDER BY stream_id, stream_version};
is($node->safe_psql('parted', $rows), $node->safe_psql('direct', $rows), 'the partitioned log holds the same events');
is($node->safe_psql('rcstmt', $rows), $node->safe_psql('direct', $rows), 'so does the log written by READ COMMITTED statements');
is($node->safe_psql('parted', q{SELECT count(*) > 1 FROM pg_inherits WHERE inhparent = 'ocx.events'::regclass}), 't',
	'(in more than one partition)');
my $a = $node->safe_psql('direct', $rows);
my $b = $node->safe_psql('stmt', $rows);
my @a = split /\n/, $a;
my @b = split /\n/, $b;
my @diff = grep { ($a[$_] // '') ne ($b[$_] // '') } 0 .. ($#a > $#b ? $#a : $#b);
is(scalar(@diff), 0, 'the two logs hold the same events, field for field, with the same hash chain (where every id and time was given)')
  or diag("first difference:\n  direct: " . ($a[ $diff[0] ] // '(none)') . "\n  statement: " . ($b[ $diff[0] ] // '(none)'));
cmp_ok(scalar(@a), '>', 500, 'and many of them');
is($node->safe_psql('direct', q{SELECT string_agg(format('%s %s %s %s', stream_id, version, deleted, tenant_id), ',' ORDER BY stream_id) FROM ocx.streams}),
	$node->safe_psql('stmt', q{SELECT string_agg(format('%s %s %s %s', stream_id, version, deleted, tenant_id), ',' ORDER BY stream_id) FROM ocx.streams}),
	'the same stream rows');
# the two databases do take the two paths
for my $db ('direct', 'stmt', 'rcstmt')
{
	is($node->safe_psql($db, q{
SELECT ocx._direct_appends() AS before \gset
SELECT ocx.append('probe-1', NULL, '{"type": "A"}') IS NOT NULL AND ocx._direct_appends() > :before}),
		$db eq 'direct' ? 't' : 'f', "appends in \"$db\" take the " . ($db eq 'direct' ? 'direct path' : 'statement'));
}
diag($node->safe_psql('direct', 'SELECT * FROM ocx.verify()')) if $ENV{OCX_DEBUG};
diag(join("\n", @mismatch)) if $ENV{OCX_DEBUG};
# (a hard delete's removal is reported, and authorised)
is($node->safe_psql('direct', 'SELECT count(*) FROM ocx.verify() WHERE NOT authorised'), '0', 'ocx.verify() is clean (direct)');
is($node->safe_psql('stmt', 'SELECT count(*) FROM ocx.verify() WHERE NOT authorised'), '0', 'ocx.verify() is clean (statement)');
is($node->safe_psql('parted', 'SELECT count(*) FROM ocx.verify() WHERE NOT authorised'), '0', 'ocx.verify() is clean (partitioned)');
is($node->safe_psql('rcstmt', 'SELECT count(*) FROM ocx.verify() WHERE NOT authorised'), '0', 'ocx.verify() is clean (READ COMMITTED statements)');

$node->stop;
done_testing();
