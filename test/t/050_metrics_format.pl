# ocx.metrics() is valid Prometheus text exposition format (version 0.0.4),
# checked line by line by the parser below, and its counters move by exactly
# what was appended.  Without shared_preload_libraries the text still parses
# and says the counters are off.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# A strict parser of the text format: returns (families, samples) or dies
# with the offending line.  families: name -> {type, help}; samples: list of
# [name, {labels}, value].
sub parse_exposition
{
	my ($text) = @_;
	my $name_re = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
	my $label_re = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
	my $value_re = qr/[-+]?(?:[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|NaN|Inf)/;
	my (%families, @samples, %seen_sample_of);

	die "text must end with a newline\n" unless $text =~ /\n\z/;
	foreach my $line (split /\n/, $text)
	{
		next if $line eq '';
		if ($line =~ /^# HELP ($name_re) (.*)$/)
		{
			my ($n, $h) = ($1, $2);
			die "second HELP for $n\n" if defined $families{$n}{help};
			die "bad escape in HELP: $line\n" if $h =~ /\\(?![\\n])/;
			$families{$n}{help} = $h;
		}
		elsif ($line =~ /^# TYPE ($name_re) (counter|gauge|histogram|summary|untyped)$/)
		{
			my ($n, $t) = ($1, $2);
			die "second TYPE for $n\n" if defined $families{$n}{type};
			die "TYPE after samples of $n\n" if $seen_sample_of{$n};
			$families{$n}{type} = $t;
		}
		elsif ($line =~ /^#/)
		{
			next;    # a comment
		}
		elsif ($line =~ /^($name_re)(?:\{(.*)\})? ($value_re)(?: (-?[0-9]+))?$/)
		{
			my ($n, $labels, $v) = ($1, $2, $3);
			my %l;
			if (defined $labels && $labels ne '')
			{
				my $rest = $labels;
				while ($rest ne '')
				{
					$rest =~ s/^($label_re)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)//
					  or die "bad labels: $line\n";
					die "duplicate label $1: $line\n" if exists $l{$1};
					$l{$1} = $2;
				}
			}
			die "sample before its TYPE: $line\n" unless defined $families{$n}{type};
			$seen_sample_of{$n} = 1;
			push @samples, [ $n, \%l, $v ];
		}
		else
		{
			die "unparsable line: $line\n";
		}
	}
	return (\%families, \@samples);
}

sub sample_value
{
	my ($samples, $name) = @_;
	my @v = map { $_->[2] } grep { $_->[0] eq $name && !%{ $_->[1] } } @$samples;
	return $v[0];
}

# the parser itself refuses what it should
foreach my $bad ("ocx_x 1\n", "# TYPE ocx_x counter\nocx_x{a=\"b} 1\n",
	"# TYPE ocx_x counter\nocx_x one\n", "# TYPE ocx_x gauge\nocx_x 1")
{
	ok(!eval { parse_exposition($bad); 1 }, 'parser refuses ' . join('\n', split /\n/, $bad));
}

my $node = PostgreSQL::Test::Cluster->new('metrics');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION ocx');

my ($fam, $samples) = parse_exposition($node->safe_psql('postgres', 'SELECT ocx.metrics()') . "\n");
is($fam->{ocx_events_total}{type}, 'counter', 'ocx_events_total is a counter');
is($fam->{ocx_log_position}{type}, 'gauge', 'ocx_log_position is a gauge');
ok(defined $fam->{ocx_appends_total}{help}, 'counters have HELP');
is(sample_value($samples, 'ocx_shared_memory'), 1, 'counters live in shared memory');
# the log horizon's holder: gauges, one sample each (0 when nobody holds it)
is($fam->{ocx_horizon_age_seconds}{type}, 'gauge', 'ocx_horizon_age_seconds is a gauge');
is($fam->{ocx_horizon_holder_pid}{type}, 'gauge', 'ocx_horizon_holder_pid is a gauge');
like(sample_value($samples, 'ocx_horizon_holder_pid'), qr/^[0-9]+$/, 'ocx_horizon_holder_pid is a pid or 0');
my $events0 = sample_value($samples, 'ocx_events_total');
my $appends0 = sample_value($samples, 'ocx_appends_total');

$node->safe_psql('postgres', q{
SELECT ocx.append('mx-1', 0, '[{"type": "A", "data": {}}, {"type": "B", "data": {}}, {"type": "C", "data": {}}]');
SELECT ocx.append_event('mx-2', NULL, 'A', '{"n": 1}');
});
# the counters are cluster-wide: a second database counts into the same ones
$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', q{CREATE EXTENSION ocx; SELECT ocx.append_event('mx-3', NULL, 'A', '{}')});

my $text = $node->safe_psql('postgres', 'SELECT ocx.metrics()') . "\n";
($fam, $samples) = eval { parse_exposition($text) };
ok(defined $fam, 'metrics text parses after appends') or diag($@);
is(sample_value($samples, 'ocx_events_total') - $events0, 5, 'ocx_events_total moved by 5');
is(sample_value($samples, 'ocx_appends_total') - $appends0, 3, 'ocx_appends_total moved by 3');
is(sample_value($samples, 'ocx_log_position'), 4, 'ocx_log_position is the last position in this database');

# without preloading: everything still parses, counters are off
$node->append_conf('postgresql.conf', "shared_preload_libraries = ''");
$node->restart;
$node->safe_psql('postgres', q{SELECT ocx.append_event('mx-4', NULL, 'A', '{}')});
($fam, $samples) = eval { parse_exposition($node->safe_psql('postgres', 'SELECT ocx.metrics()') . "\n") };
ok(defined $fam, 'metrics text parses without shared_preload_libraries') or diag($@);
is(sample_value($samples, 'ocx_shared_memory'), 0, 'ocx_shared_memory says the counters are off');
is(sample_value($samples, 'ocx_events_total'), 0, 'nothing is counted without shared memory');
ok(defined sample_value($samples, 'ocx_horizon_age_seconds'),
	'the horizon gauges do not need shared memory');
is($node->safe_psql('postgres', 'SELECT ocx.reset_stats()'), 'f', 'reset_stats says there is nothing to reset');

$node->stop;
done_testing();
