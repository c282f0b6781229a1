# t/120 (seeded random calls of every public function, 3,000 here) with
# every session in read-only transactions on the primary: every call that
# would write is refused (25006), and nothing is written.  Same checks: no
# internal error (XX000 / OX000), no crash, memory bounded.
use strict;
use warnings;
use FindBin;
# loaded here, at compile time, so that their INIT blocks run (the port
# directory, the log files): a file run by do() loads them too late
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{OCX_FUZZ_SET} = 'default_transaction_read_only = on';
do "$FindBin::Bin/120_fuzz.pl";
die $@ if $@;
