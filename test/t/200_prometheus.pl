# Prometheus for real (issue 17): Debian's prometheus-postgres-exporter runs
# docs/monitoring/ocx-queries.yaml against a cluster, Prometheus scrapes it
# with docs/monitoring/prometheus.yml's relabelling (both on private loopback
# ports), events are appended, and Prometheus's HTTP API shows the ocx series
# move; promtool accepts docs/monitoring/ocx-rules.yml.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HTTP::Tiny;
use File::Copy;

my $mon = $ENV{OCX_MONITORING} or plan skip_all => 'OCX_MONITORING (docs/monitoring) not set';
for my $b (qw(prometheus promtool prometheus-postgres-exporter))
{
	plan skip_all => "$b not installed (test/deps.sh installs it)" unless system("command -v $b >/dev/null") == 0;
}
my $port = $ENV{OCX_PORT} || 5651;
my ($exp_port, $prom_port) = ($port + 1, $port + 2);

my ($out, $err) = ('', '');
IPC::Run::run([ 'promtool', 'check', 'rules', "$mon/ocx-rules.yml" ], '>', \$out, '2>', \$err);
like($out . $err, qr/SUCCESS: \d+ rules found/, 'promtool check rules passes on ocx-rules.yml');

my $node = PostgreSQL::Test::Cluster->new('prom');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION ocx; CREATE ROLE ocx_scraper LOGIN IN ROLE ocx_reader, pg_monitor');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $dsn = sprintf('host=%s port=%d user=ocx_scraper dbname=postgres sslmode=disable', $node->host, $node->port);
local $ENV{DATA_SOURCE_NAME} = $dsn;
my $exporter = IPC::Run::start(
	[ 'prometheus-postgres-exporter', "--web.listen-address=127.0.0.1:$exp_port",
	  "--extend.query-path=$mon/ocx-queries.yaml", '--disable-default-metrics' ],
	'>', "$tmp/exporter.log", '2>&1');

# the documented scrape job, pointed at our exporter, scraping every second
open my $in, '<', "$mon/prometheus.yml" or die $!;
my $cfg = do { local $/; <$in> };
close $in;
$cfg =~ s/127\.0\.0\.1:9187/127.0.0.1:$exp_port/ or die 'no target in prometheus.yml';
$cfg =~ s/- ocx-rules\.yml/- $mon\/ocx-rules.yml/ or die 'no rule file in prometheus.yml';
$cfg = "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n" . $cfg;
open my $o, '>', "$tmp/prometheus.yml" or die $!;
print $o $cfg;
close $o;
my $prom = IPC::Run::start(
	[ 'prometheus', "--config.file=$tmp/prometheus.yml", "--web.listen-address=127.0.0.1:$prom_port",
	  "--storage.tsdb.path=$tmp/tsdb" ],
	'>', "$tmp/prometheus.log", '2>&1');

my $http = HTTP::Tiny->new(timeout => 5);
# the value of an instant query with one series, or undef
sub query
{
	my ($q) = @_;
	my $r = $http->get("http://127.0.0.1:$prom_port/api/v1/query?query=" . join('', map { sprintf('%%%02X', ord) } split //, $q));
	return undef unless $r->{success};
	return $1 if $r->{content} =~ /"value":\[[0-9.]+,"([^"]+)"\]/;
	return undef;
}
sub wait_for_value
{
	my ($q, $ok) = @_;
	for (1 .. 300)
	{
		my $v = query($q);
		return $v if defined $v && $ok->($v);
		select undef, undef, undef, 0.1;
	}
	return query($q);
}

my $v0 = wait_for_value('ocx_events_total', sub { 1 });
ok(defined $v0, 'Prometheus has ocx_events_total') or diag(slurp_file("$tmp/exporter.log") . slurp_file("$tmp/prometheus.log"));
$node->safe_psql('postgres',
	q{SELECT ocx.append('prom-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}, {"type": "D", "data": {}}, {"type": "E", "data": {}}]')});
my $v1 = wait_for_value('ocx_events_total', sub { $_[0] >= ($v0 // 0) + 5 });
is(($v1 // 0) - ($v0 // 0), 5, 'ocx_events_total moved by the 5 appended events');
is(wait_for_value('ocx_log_position', sub { $_[0] == 5 }), 5, 'the gauge ocx_log_position moved to 5');
is(query('count(ocx_stat_value)'), undef, 'no series keeps the exporter name (relabelled)');

$prom->kill_kill;
$exporter->kill_kill;
$node->stop;
done_testing();
