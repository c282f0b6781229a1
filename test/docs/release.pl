#!/usr/bin/perl
# Released versions are frozen (docs/operations.md, "Releases"): their install
# and upgrade scripts are byte for byte what was shipped, recorded at release
# in sql/released.sha256; every sql/ocx--*.sql that is not built by the
# Makefile (the current version's install script and the upgrade script into
# it are) is listed there.  Needs no server.
use strict;
use warnings;
use Digest::SHA;
use File::Basename qw(dirname);
use File::Spec;
use Test::More;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
chdir $root or die "cannot chdir to $root: $!";

my ($version) = do { local (@ARGV, $/) = ('ocx.control'); <> } =~ /default_version\s*=\s*'([^']+)'/;
ok($version, "current version $version");

my %recorded;
open my $sums, '<', 'sql/released.sha256' or die "cannot read sql/released.sha256: $!";
while (<$sums>)
{
	next if /^\s*(#|$)/;
	my ($sum, $file) = /^([0-9a-f]{64})\s+\*?(\S+)$/ or die "bad line in sql/released.sha256: $_";
	$recorded{$file} = $sum;
}
ok(keys %recorded >= 2, 'released scripts recorded: ' . join(', ', sort keys %recorded));

for my $file (sort keys %recorded)
{
	ok(-f $file, "$file exists") or next;
	is(Digest::SHA->new(256)->addfile($file)->hexdigest, $recorded{$file}, "$file is as released");
}

# every script that is not built from parts or fragments is a released one
my @built = ("sql/ocx--$version.sql", map { "sql/ocx--$_.sql" } map { (split m{/})[-1] } glob('sql/upgrade/*--*'));
my %built = map { $_ => 1 } @built;
is_deeply([ grep { !$built{$_} && !$recorded{$_} } sort glob('sql/ocx--*.sql') ], [],
	'every committed script outside the current version is recorded as released');
ok(!$recorded{"sql/ocx--$version.sql"}, "the version in development ($version) is not recorded as released");

done_testing();
