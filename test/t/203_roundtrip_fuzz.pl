# Fuzz of the export/import round trip (issue 16): 3,000 seeded random events
# (data and metadata of every JSON shape: unicode beyond the BMP, escapes,
# control characters, empty and odd keys, deep nesting, numbers of many
# digits, exponents and negative zero; tags; times with microseconds in
# other zones; sources, ids, correlation and causation, schema versions)
# appended in random batches to random streams, exported with ocx.export()
# to NDJSON through COPY TO, imported into a fresh database with COPY FROM
# and ocx.import_commit(): every stored field is the same, in the same log
# order, with the same hashes, and ocx.verify() is clean on both.
# Replay with OCX_FUZZ_SEED=<seed>.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxFuzz;

my $seed = fuzz_seed();
my $nevents = $ENV{OCX_ROUNDTRIP_FUZZ_EVENTS} // 3000;
diag("ocx round-trip fuzz seed: $seed (replay: OCX_FUZZ_SEED=$seed), events: $nevents");

my $node = PostgreSQL::Test::Cluster->new('roundtrip_fuzz');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE target');
$node->safe_psql($_, 'CREATE EXTENSION ocx') for ('postgres', 'target');


# a JSON string literal of random characters (escaped as JSON requires; the
# script works on UTF-8 bytes: beyond the BMP, the last code point, a BOM)
sub jstring
{
	my @chars = ('a', 'Z', '0', ' ', '.', '"', '\\', '/', "\n", "\t", "\x01", "\x1f", 'é', 'ß', '€', '日本',
		"\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF", "\xEF\xBB\xBF", "'", '{', '}', '[', ']', ':', ',', '$', '%', '&');
	my $s = join('', map { pick(@chars) } 1 .. int(rand(16)));
	$s =~ s/\\/\\\\/g;
	$s =~ s/"/\\"/g;
	$s =~ s/\n/\\n/g;
	$s =~ s/\t/\\t/g;
	$s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord($1))/ge;
	return "\"$s\"";
}
sub jnumber
{
	return pick('0', '-0', '1', '-1', '3.14', '1e10', '-2.5E-7', '12345678901234567890.123456789',
		'0.000000000000000000001', '1e300', int(rand(1e9)), '100000000000000000000000000000');
}
sub jvalue
{
	my ($depth) = @_;
	my $r = rand();
	return jobject($depth + 1) if $r < 0.15 && $depth < 12;
	return jarray($depth + 1) if $r < 0.25 && $depth < 12;
	return pick('true', 'false', 'null') if $r < 0.35;
	return jnumber() if $r < 0.6;
	return jstring();
}
sub jobject
{
	my ($depth) = @_;
	my %seen;
	my @pairs;
	for (1 .. int(rand(6)))
	{
		my $k = pick(jstring(), '""', '"a.b"', '"ocx"', '"type"', '"\\u0001x"');
		next if $seen{$k}++;
		push @pairs, "$k: " . jvalue($depth);
	}
	return '{' . join(', ', @pairs) . '}';
}
sub jarray
{
	my ($depth) = @_;
	return '[' . join(', ', map { jvalue($depth) } 1 .. int(rand(5))) . ']';
}

# random batches of random events to random streams
my $written = 0;
my @sql;
while ($written < $nevents)
{
	my $n = 1 + int(rand(20));
	my $stream = pick('rt', 'acct', 'x.y', 'über', 'a-b-c', 'emoji') . '-' . int(rand(60));
	my @events;
	for (1 .. $n)
	{
		my @f = ('"type": ' . pick('"A"', '"B.c"', '"Ünïcode"', '"t' . int(rand(5)) . '"'),
			'"data": ' . jobject(0));
		push @f, '"metadata": ' . jobject(0) if chance(0.5);
		push @f, '"id": "' . uuid() . '"' if chance(0.5);
		push @f, '"source": ' . pick('"/a"', '"urn:x:y"', '"https://example.org/é"') if chance(0.4);
		push @f, '"correlation_id": "' . uuid() . '"' if chance(0.3);
		push @f, '"causation_id": "' . uuid() . '"' if chance(0.3);
		push @f, '"time": "' . sprintf('20%02d-%02d-%02dT%02d:%02d:%02d.%06d%s', int(rand(30)), 1 + int(rand(12)),
			1 + int(rand(28)), int(rand(24)), int(rand(60)), int(rand(60)), int(rand(1e6)),
			pick('Z', '+05:30', '-11:00', '+00:00')) . '"' if chance(0.4);
		push @f, '"tags": [' . join(', ', map { '"tag' . int(rand(30)) . '"' } 0 .. int(rand(3))) . ']' if chance(0.3);
		push @f, '"schema_version": ' . (1 + int(rand(3))) if chance(0.2);
		push @events, '{' . join(', ', @f) . '}';
	}
	push @sql, "SELECT ocx.append(" . sq($stream) . ", NULL, " . sq('[' . join(', ', @events) . ']') . ");";
	$written += $n;
}
# in transactions of 50 calls, so that log order is not one transaction's
for (my $i = 0; $i < @sql; $i += 50)
{
	my $last = $i + 49 < $#sql ? $i + 49 : $#sql;
	$node->safe_psql('postgres', "BEGIN;\n" . join("\n", @sql[ $i .. $last ]) . "\nCOMMIT;");
}
is($node->safe_psql('postgres', 'SELECT count(*) FROM ocx.events'), $written, "the source holds $written events");

my $file = $node->basedir . '/fuzz.ndjson';
$node->safe_psql('postgres', qq{COPY (SELECT cloudevent FROM ocx.export())
    TO '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')});
is((split /\n/, $node->safe_psql('target', qq{
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (cloudevent) FROM '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
SELECT events FROM ocx.import_commit();
COMMIT;}))[-1], $written, 'the export imports into a fresh database');

# every stored field, in log order, row by row
my $rows = q{
SELECT format('%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s', stream_id, stream_version, event_id, source, type,
              schema_version, extract(epoch FROM time), data, metadata, correlation_id, causation_id, tags,
              encode(hash, 'hex'))
  FROM ocx.events ORDER BY txid, global_position};
my @a = split /\n/, $node->safe_psql('postgres', $rows);
my @b = split /\n/, $node->safe_psql('target', $rows);
is(scalar(@b), scalar(@a), 'as many events');
my @diff = grep { $a[$_] ne ($b[$_] // '') } 0 .. $#a;
is(scalar(@diff), 0, 'every field of every event is the same, in the same log order, with the same hash')
  or diag("first difference, event " . ($diff[0] + 1) . ":\n  source: $a[$diff[0]]\n  import: " . ($b[ $diff[0] ] // '(none)'));
is($node->safe_psql('postgres', 'SELECT count(*) FROM ocx.verify()'), '0', 'ocx.verify() is clean on the source');
is($node->safe_psql('target', 'SELECT count(*) FROM ocx.verify()'), '0', 'and on the import');
is($node->safe_psql('target', q{SELECT string_agg(stream_id || ':' || version, ',' ORDER BY stream_id) FROM ocx.streams}),
	$node->safe_psql('postgres', q{SELECT string_agg(stream_id || ':' || version, ',' ORDER BY stream_id) FROM ocx.streams}),
	'the same streams at the same versions');

$node->stop;
done_testing();
