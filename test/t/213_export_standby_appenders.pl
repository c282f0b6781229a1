# t/212 (the export read from a hot standby while the primary appends in
# random open transactions) with ocx.horizon = 'appenders' on the primary
# and the standby: the standby's readers must not take the appenders'
# horizon (its slots are the primary's, and empty there); same checks, same
# seed.
use strict;
use warnings;
use FindBin;
# loaded here, at compile time, so that their INIT blocks run (the port
# directory, the log files): a file run by do() loads them too late
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{OCX_SUB_HORIZON} = 'appenders';
do "$FindBin::Bin/212_export_standby.pl";
die $@ if $@;
