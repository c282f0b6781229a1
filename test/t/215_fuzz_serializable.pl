# t/120 (seeded random calls of every public function, 3,000 here) with
# every session at the serializable isolation level, where appends take the
# SQL statement path (src/directappend.c leaves REPEATABLE READ and
# SERIALIZABLE to it).  Same checks: no internal error (XX000 / OX000), no
# crash, memory bounded, the log unchanged by every failed call.
use strict;
use warnings;
use FindBin;
# loaded here, at compile time, so that their INIT blocks run (the port
# directory, the log files): a file run by do() loads them too late
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{OCX_FUZZ_SET} = 'default_transaction_isolation = serializable';
do "$FindBin::Bin/120_fuzz.pl";
die $@ if $@;
