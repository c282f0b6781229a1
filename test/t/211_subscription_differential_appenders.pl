# t/210 (durable subscriptions and resumed exports against random open
# transactions) with ocx.horizon = 'appenders': the readers' horizon is the
# lowest registered appender instead of the snapshot's xmin (src/appenders.c),
# so the empty polls that move a cursor to the horizon, the partitions' polls
# and the exports' pages rest on the other rule.  Same checks, same seed.
use strict;
use warnings;
use FindBin;
# loaded here, at compile time, so that their INIT blocks run (the port
# directory, the log files): a file run by do() loads them too late
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

$ENV{OCX_SUB_HORIZON} = 'appenders';
do "$FindBin::Bin/210_subscription_differential.pl";
die $@ if $@;
