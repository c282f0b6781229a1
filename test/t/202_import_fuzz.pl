# Fuzz of the bulk import (issue 16): 250 seeded random batches of 1 to 40
# staged rows each, most of them good batches with sometimes one random row
# among them, the rest random rows (every column of ocx.import_staging random:
# good values, bad ones, NULLs, sizes, unicode, JSON of every shape,
# CloudEvents), through
# ocx.import_begin / import_commit, as superuser and as a member of
# ocx_admin, into a log with a contract, personal data (a key file), a
# running inline projection, tags and user triggers on ocx.events.
# Asserts: no internal error (XX000, OX000), no lost connection, every
# refused batch left the log, the stream rows and the data keys as they
# were, every imported batch added exactly the events it reported, and the
# log verifies at the end.  Replay with OCX_FUZZ_SEED=<seed>.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;
use OcxPrivacy;

my $seed = fuzz_seed();
my $nbatches = $ENV{OCX_IMPORT_FUZZ_BATCHES} // 250;
diag("ocx import fuzz seed: $seed (replay: OCX_FUZZ_SEED=$seed), batches: $nbatches");

my $node = privacy_node('import_fuzz');
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE ROLE fz_admin LOGIN IN ROLE ocx_admin;
SELECT ocx.define_event_type('ct.Typed', 1, '{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}');
SELECT ocx.define_personal_data('CustomerRegistered', 'customer_id', '{email,address.street}');
CREATE TABLE fz_applied (stream_id text, stream_version bigint);
GRANT INSERT ON fz_applied TO PUBLIC;
CREATE FUNCTION fz_inline(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'boom' THEN RAISE EXCEPTION 'the inline handler refuses'; END IF;
    INSERT INTO public.fz_applied VALUES (e.stream_id, e.stream_version);
END $$;
SELECT ocx.define_projection('fz_inline', 'fz_inline(ocx.event)', categories => '{inl}', mode => 'inline');
UPDATE ocx.projections SET state = 'running' WHERE name = 'fz_inline';
CREATE TABLE fz_seen (n bigint);
CREATE FUNCTION fz_row() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN INSERT INTO fz_seen VALUES (NEW.stream_version); RETURN NEW; END $$;
CREATE TRIGGER fz_row BEFORE INSERT ON ocx.events FOR EACH ROW EXECUTE FUNCTION fz_row();
SELECT ocx.append('inl-0', NULL, '{"type": "A"}');
-- what a batch may change, read as the superuser whoever imports
CREATE FUNCTION fz_state() RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
SELECT (SELECT count(*) || '/' || coalesce(max(global_position), 0) FROM ocx.events) || ' '
    || (SELECT count(*) || '/' || coalesce(sum(version), 0) FROM ocx.streams) || ' '
    || (SELECT count(*) FROM ocx.subject_keys) || ' ' || (SELECT count(*) FROM fz_applied)
$$;
});

sub lit { my $s = shift; return 'NULL' unless defined $s; $s =~ s/'/''/g; return "'$s'"; }
sub rstr
{
	my $n = shift // int(rand(12));
	return join('', map { pick('a' .. 'z', 0 .. 9, '-', ':', '"', "'", '\\', ' ', 'é', '€', '{', '}', "\t") } 1 .. $n);
}
# a string that JSON takes as it is (no quote, backslash or control character)
sub jstr
{
	my $n = shift // int(rand(12));
	return join('', map { pick('a' .. 'z', 0 .. 9, '-', ':', "'", ' ', 'é', '€', '{', '}') } 1 .. $n);
}

my @streams = ('fz-1', 'fz-2', 'fz-3', 'inl-1', 'inl-0', 'cust-1', 'cust-2');
my $fixed_id = uuid();
sub gen_data
{
	return pick(
		'{}', '{"n": 1}', '{"n": "x"}', '[1, 2]', '"scalar"', '7', 'null', 'not json', '{"a": ', '',
		'{"customer_id": "c' . int(rand(5)) . '", "email": "e' . int(rand(99)) . '@x.org", "address": {"street": "S ' . int(rand(9)) . '"}}',
		'{"customer_id": 42, "email": null}', '{"email": "no subject"}',
		'{"customer_id": "c1", "note": "ocx:pd1:00000000-0000-0000-0000-000000000000:AAAA"}',
		'{"boom": true}', '{"big": "' . ('x' x int(rand(3000))) . '"}', '{"n": 1e400}',
		'{"deep": ' . ('[' x 50) . ('] ' x 50) . '}', '{"u": "\u0000"}', '{"k": "' . rstr() . '"}',
		undef);
}
sub gen_row
{
	my %r;
	if (chance(0.1))
	{
		$r{cloudevent} = pick(
			'{"specversion": "1.0", "id": "' . uuid() . '", "source": "/ce", "type": "A", "ocxstream": "' . pick(@streams) . '", "ocxversion": ' . int(rand(5)) . ', "data": {}}',
			'{"specversion": "0.3", "id": "x", "source": "/ce", "type": "A"}',
			'{"id": "' . uuid() . '", "type": "A"}', '[]', 'garbage', '{"specversion": "1.0", "ocxtags": [1, 2]}',
			'{"specversion": "1.0", "id": "' . uuid() . '", "source": "/ce", "type": "CustomerRegistered", "ocxstream": "cust-9", "ocxversion": 1, "data": {"customer_id": "c9", "email": "z@z"}}');
		return \%r;
	}
	$r{stream_id} = chance(0.9) ? pick(@streams) : pick('', rstr(), 'x' x 300, undef);
	$r{stream_version} = chance(0.85) ? int(rand(6)) + 1 : pick('0', '-1', 'x', '', '99999999999999999999', undef, '1.5');
	$r{type} = pick('A', 'A', 'CustomerRegistered', 'ct.Typed', 'B', '', 'x' x 257, rstr(), undef);
	$r{data} = gen_data();
	$r{metadata} = pick(undef, undef, '{}', '{"m": 1}', '[1]', 'bad', '{"ocxstream": "x"}');
	$r{event_id} = pick(undef, undef, uuid(), uuid(), $fixed_id, 'not-a-uuid', '');
	$r{source} = pick(undef, undef, '/a', '/b', '', 'x' x 300);
	$r{time} = pick(undef, undef, '2020-01-01T00:00:00Z', '2020-13-45', 'infinity', 'now', '');
	$r{schema_version} = pick(undef, undef, undef, '1', '2', '0', '-3', 'x', '2147483648');
	$r{correlation_id} = pick(undef, undef, uuid(), 'bad');
	$r{causation_id} = pick(undef, undef, uuid(), 'bad');
	$r{tags} = pick(undef, undef, undef, '["a"]', '["a", "b", "a"]', '[]', '["a", 1]', '{"x": 1}', '"s"', '[""]',
		'["' . ('t' x 300) . '"]', '[' . join(', ', map { "\"t$_\"" } 1 .. (chance(0.5) ? 5 : 1200)) . ']');
	return \%r;
}

# a batch that should import: fresh streams, consecutive versions in line
# order, good values (tags, ids, personal data, the contract, the inline
# projection's category); sometimes with one random row among them
sub sane_rows
{
	my ($b, $n, $pure) = @_;
	my $nstreams = 1 + int(rand(4));
	my @next = (1) x $nstreams;
	my @rows;
	for (1 .. $n)
	{
		my $k = int(rand($nstreams));
		my $kind = ('fz', 'inl', 'cust', 'ct')[$k % 4];
		my %r = (stream_id => "$kind-$b-$k", stream_version => $next[$k]++);
		if ($kind eq 'cust')
		{
			$r{type} = 'CustomerRegistered';
			$r{data} = '{"customer_id": "c' . int(rand(20)) . '", "email": "e' . int(rand(999)) . '@x.org", "address": {"street": "S ' . jstr(5) . '"}}';
		}
		elsif ($kind eq 'ct')
		{
			$r{type} = 'ct.Typed';
			$r{data} = '{"n": ' . int(rand(100)) . '}';
		}
		else
		{
			$r{type} = pick('A', 'B');
			$r{data} = '{"k": "' . jstr() . '"}';
		}
		$r{event_id} = uuid() if chance(0.5);
		$r{tags} = '["t' . int(rand(10)) . '", "u"]' if chance(0.3);
		$r{time} = '2021-06-0' . (1 + int(rand(9))) . 'T00:00:00Z' if chance(0.3);
		push @rows, \%r;
	}
	splice(@rows, int(rand(@rows + 1)), 0, gen_row()) unless $pure;
	return @rows;
}

my @cols = qw(stream_id stream_version type data metadata event_id source time schema_version
  correlation_id causation_id tags cloudevent);
my $state_sql = q{SELECT fz_state() AS fz_state \gset};

my (%states, @internal, @changed, @miscount, @good_refused);
my $lost = 0;
my $imported = 0;
for my $b (1 .. $nbatches)
{
	my $role = $b % 5 == 0 ? 'fz_admin' : 'postgres';
	# every 50th batch: 1,500 good rows (more than a chunk of 1,000); else
	# good rows (some with one random row among them) or random rows
	my $pure = $b % 50 == 0 || chance(0.4);
	my @rows = $b % 50 == 0 ? sane_rows($b, 1500, 1)
	  : chance(0.6) ? sane_rows($b, 1 + int(rand(30)), $pure)
	  : map { gen_row() } 1 .. (1 + int(rand(40)));
	$pure = 0 unless $b % 50 == 0 || $rows[0]{stream_id} && $rows[0]{stream_id} =~ /-$b-/;
	my $values = join(",\n", map { my $r = $_; '(' . join(', ', map { lit($r->{$_}) } @cols) . ')' } @rows);
	my $script = "\\set QUIET on\nSET client_min_messages = error;\n$state_sql\n\\echo \@B :fz_state\n"
	  . "BEGIN;\nSELECT ocx.import_begin();\n"
	  . "INSERT INTO ocx.import_staging (" . join(', ', map { "\"$_\"" } @cols) . ") VALUES\n$values;\n"
	  . "SELECT events AS fz_events FROM ocx.import_commit() \\gset\n\\echo \@R :SQLSTATE :fz_events\n"
	  . "COMMIT;\n$state_sql\n\\echo \@A :fz_state\n";
	my ($stdout, $stderr);
	$node->psql('postgres', $script, stdout => \$stdout, stderr => \$stderr,
		extra_params => [ '-U', $role ], on_error_stop => 0, timeout => 300);
	my ($before) = $stdout =~ /^\@B (.*)$/m;
	my ($st, $events) = $stdout =~ /^\@R (\S+) (\S+)$/m;
	my ($after) = $stdout =~ /^\@A (.*)$/m;
	if (!defined $st || !defined $after)
	{
		$lost++;
		diag("batch $b ($role): no answer; stderr: " . substr($stderr // '', -1500));
		next;
	}
	$states{$st}++;
	push @internal, "batch $b ($role): $st: " . substr($stderr // '', 0, 500) if $st eq 'XX000' || $st eq 'OX000';
	push @good_refused, "batch $b ($role, " . scalar(@rows) . " good rows): $st: " . substr($stderr // '', 0, 300)
	  if $pure && $st ne '00000';
	if ($st ne '00000')
	{
		push @changed, "batch $b ($role) $st: $before -> $after" if $before ne $after;
		next;
	}
	my ($n0) = $before =~ /^(\d+)\//;
	my ($n1) = $after =~ /^(\d+)\//;
	push @miscount, "batch $b: reported $events, the log grew by " . ($n1 - $n0) if $n1 - $n0 != $events;
	$imported += $events;
}
diag('SQLSTATEs: ' . join(', ', map { "$_ x$states{$_}" } sort keys %states) . "; events imported: $imported");

is($lost, 0, 'every batch answered (no lost connection, no crash)');
is(join("\n", @internal), '', 'no internal error (XX000 / OX000)');
is(join("\n", @changed), '', 'a refused batch changes nothing: events, stream rows, data keys, the inline read model');
is(join("\n", @miscount), '', 'an imported batch adds the events it reports');
is(join("\n", @good_refused), '', 'every batch of good rows only is imported (1,500 rows: more than a chunk)');
ok(($states{'00000'} // 0) > 0, 'some batches were imported (the fuzz reaches the write)');
ok(scalar(grep { $_ ne '00000' } keys %states) >= 5, 'and many kinds of refusal');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify()}), '0', 'ocx.verify() is clean');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM ocx.events e WHERE e.type = 'CustomerRegistered' AND e.data->>'email' IS NOT NULL
   AND e.data->>'email' NOT LIKE 'ocx:pd1:%'}), '0', 'no imported email is stored in clear');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM ocx.events e WHERE e.stream_id LIKE 'inl-%'
   AND NOT EXISTS (SELECT FROM fz_applied a WHERE a.stream_id = e.stream_id AND a.stream_version = e.stream_version)}),
	'0', 'the inline projection applied every imported event it selects');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.import_staging}), '0', 'nothing is left staged');

$node->stop;
done_testing();
