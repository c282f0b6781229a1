#!/usr/bin/perl
# The documentation as a test (run by `make test`, suite "docs"):
#   - every relative link in README.md and docs/ names a file that exists, and
#     every #anchor a heading of that file (GitHub's rule for heading ids);
#   - no table is cut in two by a blank line (it renders as a broken table);
#   - every public function and view of the install script, every ocx.*
#     setting defined in C and every SQLSTATE in include/ocx_errors.h appears
#     in docs/ (functions and views as ocx.<name>, and in the index of
#     docs/reference.md; SQLSTATEs in docs/errors.md).
# Needs no server: it reads the files of the checkout.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use Test::More;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
chdir $root or die "cannot chdir to $root: $!";

sub slurp
{
	my ($f) = @_;
	open my $fh, '<:encoding(UTF-8)', $f or die "cannot read $f: $!";
	local $/;
	return scalar <$fh>;
}

# the lines of a markdown file outside fenced code blocks
sub prose_lines
{
	my ($text) = @_;
	my ($fence, @out) = (0);
	for my $l (split /\n/, $text)
	{
		if ($l =~ /^\s*(```|~~~)/) { $fence = !$fence; push @out, ''; next; }
		push @out, $fence ? '' : $l;
	}
	return @out;
}

# GitHub's heading ids: lower case, drop what is not a letter, digit, space,
# hyphen or underscore, spaces to hyphens, -1, -2 ... for repeats
my %anchors;
sub anchors_of
{
	my ($f) = @_;
	return $anchors{$f} if $anchors{$f};
	my (%seen, %ids);
	for my $l (prose_lines(slurp($f)))
	{
		next unless $l =~ /^#{1,6}\s+(.*?)\s*#*\s*$/;
		my $id = lc $1;
		$id =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;    # a link in a heading keeps its text
		$id =~ s/[^\w\- ]//g;
		$id =~ s/ /-/g;
		my $n = $seen{$id}++;
		$ids{$n ? "$id-$n" : $id} = 1;
	}
	return $anchors{$f} = \%ids;
}

my @md = ('README.md', sort glob('docs/*.md docs/*/*.md'));
ok(@md > 5, 'found the documentation (' . scalar(@md) . ' files)');

for my $f (@md)
{
	my @lines = prose_lines(slurp($f));
	my @bad;
	for my $i (0 .. $#lines)
	{
		my $l = $lines[$i];
		$l =~ s/`[^`]*`//g;    # code spans are not links
		while ($l =~ /\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)
		{
			my $target = $1;
			next if $target =~ m{^(?:[a-z][a-z0-9+.-]*:|//)}i;    # http:, mailto: ...
			my ($path, $anchor) = split /#/, $target, 2;
			my $file = $path eq '' ? $f
			  : File::Spec->abs2rel(File::Spec->rel2abs($path, dirname($f)), $root);
			if (!-e $file)
			{
				push @bad, "line " . ($i + 1) . ": $target (no file $file)";
				next;
			}
			next unless defined $anchor && $anchor ne '';
			if ($file !~ /\.md$/ || !anchors_of($file)->{$anchor})
			{
				push @bad, "line " . ($i + 1) . ": $target (no heading #$anchor in $file)";
			}
		}
	}
	is_deeply(\@bad, [], "$f: every relative link and anchor resolves");

	my @cut;
	for my $i (1 .. $#lines - 1)
	{
		push @cut, 'line ' . ($i + 1)
		  if $lines[$i] =~ /^\s*$/ && $lines[$i - 1] =~ /^\s*\|/ && $lines[$i + 1] =~ /^\s*\|.*\|\s*$/
		  && $lines[$i + 1] !~ /^\s*\|?\s*:?-{3,}/
		  && ($i + 2 > $#lines || $lines[$i + 2] !~ /^\s*\|?\s*:?-{3,}/);
	}
	is_deeply(\@cut, [], "$f: no table cut in two by a blank line");
}

# what the install script and the C define, the docs name
my $version = (slurp('ocx.control') =~ /default_version\s*=\s*'([^']+)'/)[0];
my $install = slurp("sql/ocx--$version.sql");
my $reference = slurp('docs/reference.md');
my $alldocs = join "\n", map { slurp($_) } @md;

my %functions = map { $_ => 1 }
  grep { !/^_/ && !/^cursor_(?:in|out|recv|send|cmp|eq|ne|lt|le|gt|ge)$/ }
  $install =~ /CREATE (?:OR REPLACE )?FUNCTION ocx\.([a-z_0-9]+)\s*\(/gi;
my %views = map { $_ => 1 } grep { !/^_/ } $install =~ /CREATE (?:OR REPLACE )?VIEW ocx\.([a-z_0-9]+)/gi;
ok(keys %functions > 20, 'found the public functions (' . scalar(keys %functions) . ')');
is_deeply([ grep { $alldocs !~ /\bocx\.\Q$_\E\b/ } sort keys %functions ], [],
	'every public function is in docs/ as ocx.<name>');
is_deeply([ grep { $alldocs !~ /\bocx\.\Q$_\E\b/ } sort keys %views ], [],
	'every view is in docs/ as ocx.<name>');
is_deeply([ grep { $reference !~ /\b\Q$_\E\b/ } sort keys(%functions), keys(%views) ], [],
	'docs/reference.md names every public function and view');

my $c = join "\n", map { slurp($_) } glob('src/*.c');
my %settings = map { $_ => 1 } $c =~ /DefineCustom\w+Variable\(\s*"(ocx\.[a-z_0-9]+)"/g;
ok(keys %settings > 5, 'found the settings (' . scalar(keys %settings) . ')');
is_deeply([ grep { $alldocs !~ /\Q$_\E\b/ } sort keys %settings ], [], 'every setting is in docs/');

my $errors_h = slurp('include/ocx_errors.h');
my $errors_md = slurp('docs/errors.md');
my %states;
$states{"OX$1$2$3"} = 1
  while $errors_h =~ /MAKE_SQLSTATE\('O',\s*'X',\s*'(\w)',\s*'(\w)',\s*'(\w)'\)/g;
ok(keys %states > 10, 'found the SQLSTATEs (' . scalar(keys %states) . ')');
is_deeply([ grep { $errors_md !~ /`\Q$_\E`/ } sort keys %states ], [], 'every SQLSTATE is in docs/errors.md');

done_testing();
