# What the seeded fuzz and differential TAP tests share (t/202 to t/208):
# the seed (OCX_FUZZ_SEED, printed by each test; the same default for all),
# the random choices, SQL quoting, random UUIDs, and run(op), the SQL
# function that turns an operation's outcome into text (its result, or its
# SQLSTATE) so that two databases' outcomes compare line by line.
package OcxFuzz;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(fuzz_seed pick chance sq uuid $RUN_SQL);

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
