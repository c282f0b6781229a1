# t/120 (seeded random calls of every public function, 3,000 here) with
# every session in the tenant 'acme' (ocx.tenant; docs/tenancy.md): the
# tenant checks, the row-level security of the log and the tenant's share
# of every table under random input.  Same checks: no internal error
# (XX000 / OX000), no crash, memory bounded, the log unchanged by every
# failed call.
use strict;
use warnings;
use FindBin;
# loaded here, at compile time, so that their INIT blocks run (the port
# directory, the log files): a file run by do() loads them too late
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{OCX_FUZZ_SET} = "ocx.tenant = 'acme'";
do "$FindBin::Bin/120_fuzz.pl";
die $@ if $@;
