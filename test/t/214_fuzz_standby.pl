# t/120 (seeded random calls of every public function) against a hot
# standby of the fuzz's set-up database: a call that would write is refused
# as read-only (25006), never with an internal error; no call crashes the
# standby or changes what it holds.
use strict;
use warnings;
use FindBin;
# loaded here, at compile time, so that their INIT blocks run (the port
# directory, the log files): a file run by do() loads them too late
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{OCX_FUZZ_STANDBY} = 1;
do "$FindBin::Bin/120_fuzz.pl";
die $@ if $@;
