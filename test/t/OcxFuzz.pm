# What the seeded fuzz and differential TAP tests share (t/202 to t/208):
# the seed (OCX_FUZZ_SEED, printed by each test; the same default for all),
# the random choices, SQL quoting, random UUIDs, and run(op), the SQL
# function that turns an operation's outcome into text (its result, or its
# SQLSTATE) so that two databases' outcomes compare line by line.
package OcxFuzz;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(fuzz_seed pick chance sq uuid $RUN_SQL random_writers writer_step writers_finish
  export_pager export_page import_ndjson);

# Seed perl's generator from OCX_FUZZ_SEED (default 20261207); returns the seed.
sub fuzz_seed
{
	my $seed = $ENV{OCX_FUZZ_SEED} // 20261207;
	srand($seed);
	return $seed;
}

sub pick { return $_[ int(rand(scalar @_)) ]; }
sub chance { return rand() < $_[0]; }
sub sq { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

# a random version 4 UUID
sub uuid
{
	return sprintf('%08x-%04x-4%03x-8%03x-%06x%06x', int(rand(2**32)), int(rand(2**16)), int(rand(2**12)),
		int(rand(2**12)), int(rand(2**24)), int(rand(2**24)));
}

# Writer sessions for the differentials against open transactions (t/210,
# t/212): $n background sessions on $node, each owning its share of
# @$streams (a stream's lock is held to its writer's commit, and one writer
# waiting for another would stop the test's single thread).  $append->($s,
# $own) appends through session $s to a stream it picks from @$own.
sub random_writers
{
	my ($node, $n, $streams, $append) = @_;
	my @own = map { my $w = $_; [ @{$streams}[ grep { $_ % $n == $w } 0 .. $#$streams ] ] } 0 .. $n - 1;
	return { s => [ map { $node->background_psql('postgres') } 1 .. $n ], in_tx => [ (0) x $n ],
			 own => \@own, append => $append };
}

# One step of writer $w: open a transaction if it has none, then append one
# to three times (55 %), append in a savepoint rolled back (10 %), commit
# (25 %) or roll back (10 %).
sub writer_step
{
	my ($wr, $w) = @_;
	my $s = $wr->{s}[$w];
	if (!$wr->{in_tx}[$w])
	{
		$s->query_safe('BEGIN');
		$wr->{in_tx}[$w] = 1;
	}
	my $r = rand();
	my $append = sub { $wr->{append}->($s, $wr->{own}[$w]); };
	if ($r < 0.55) { $append->() for 1 .. 1 + int(rand(3)); }
	elsif ($r < 0.65)
	{
		$s->query_safe('SAVEPOINT sp');
		$append->();
		$s->query_safe('ROLLBACK TO SAVEPOINT sp');
	}
	elsif ($r < 0.9) { $s->query_safe('COMMIT'); $wr->{in_tx}[$w] = 0; }
	else { $s->query_safe('ROLLBACK'); $wr->{in_tx}[$w] = 0; }
}

# End every writer's open transaction (commit with probability $p_commit,
# else roll back; 1: commit, drawing no random number) and close the
# sessions.
sub writers_finish
{
	my ($wr, $p_commit) = @_;
	for my $w (0 .. $#{ $wr->{s} })
	{
		$wr->{s}[$w]->query_safe($p_commit >= 1 || chance($p_commit) ? 'COMMIT' : 'ROLLBACK') if $wr->{in_tx}[$w];
		$wr->{s}[$w]->quit;
	}
}

# An export resumed page by page from its last cursor (docs/migrating.md,
# "The export") through session $s, of one category or (undef) the whole
# log: export_page($x) asks for a page of 1 to 20 events (export_page($x,
# $n): of $n) after the last cursor and records, in order, each event's
# global position (in {got}) and id (in {ids}); it returns how many the page
# held.  The session may be swapped ({s}) to resume on another node.
sub export_pager
{
	my ($s, $category) = @_;
	return { s => $s, category => $category, after => undef, got => [], ids => [], pages => 0 };
}

sub export_page
{
	my ($x, $n) = @_;
	$n //= 1 + int(rand(20));
	my $after = defined $x->{after} ? "'$x->{after}'" : 'NULL';
	my $cat = defined $x->{category} ? sq($x->{category}) : 'NULL';
	my $out = $x->{s}->query_safe("SELECT cursor::text || '|' || (cloudevent->>'id') FROM ocx.export($cat, $after, $n)");
	my @lines = grep { $_ ne '' } split /\n/, $out;
	for my $line (@lines)
	{
		my ($cursor, $id) = split /\|/, $line;
		my ($gp) = $cursor =~ m{/(\d+)$};
		push @{ $x->{got} }, $gp;
		push @{ $x->{ids} }, $id;
		$x->{after} = $cursor;
	}
	$x->{pages}++ if @lines;
	return scalar @lines;
}

# Import the newline-delimited CloudEvents of a server-side $file into
# database $db of $node (import_begin, COPY into ocx.import_staging,
# import_commit, in one transaction); returns the number of events written.
sub import_ndjson
{
	my ($node, $db, $file) = @_;
	my $out = $node->safe_psql($db, qq{
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (cloudevent) FROM '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
SELECT events FROM ocx.import_commit();
COMMIT;});
	my ($events) = $out =~ /^(\d+)$/m;
	return $events // "no count in: $out";
}

our $RUN_SQL = q{
-- an operation's outcome: its result, or its SQLSTATE
CREATE FUNCTION run(op text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
    EXECUTE op INTO r;
    RETURN coalesce(r, 'null');
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE;
END $$;
GRANT EXECUTE ON FUNCTION run(text) TO PUBLIC;
};

1;
