#!/usr/bin/perl
# Nothing dead in the C sources (issue 13, "Remove what is dead"): every
# extern of include/*.h is used by a second file of src/ (or is a background
# worker's entry point, which the postmaster finds by its name in a string),
# every #define is used, no worker sleeps with pg_usleep (they wait on their
# latch), and no branch is kept for a PostgreSQL major the build refuses.
# Reads the checkout; needs no server.
use strict;
use warnings;
use File::Basename qw(basename dirname);
use File::Spec;
use Test::More;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
chdir $root or die "cannot chdir to $root: $!";

sub slurp
{
	my ($file) = @_;
	open my $fh, '<', $file or die "cannot read $file: $!";
	local $/;
	my $text = <$fh>;
	# comments say what code did and does; only code counts as a use
	$text =~ s{/\*.*?\*/}{ }gs;
	$text =~ s{//[^\n]*}{}g;
	return $text;
}

my %c = map { $_ => slurp($_) } glob('src/*.c');
my %h = map { $_ => slurp($_) } glob('include/*.h');
ok(keys %c > 20 && keys %h > 5, 'the walk finds the sources: ' . scalar(keys %c) . ' .c, ' . scalar(keys %h) . ' .h');

sub files_using
{
	my ($name) = @_;
	return grep { $c{$_} =~ /\b\Q$name\E\b/ } sort keys %c;
}

# 1. every extern is used outside the file that defines it
my @externs;
for my $file (sort keys %h)
{
	for my $decl ($h{$file} =~ /^extern\s+([^;]*);/mg)
	{
		my ($name) = $decl =~ /([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(|\[|$)/;
		push @externs, $name if defined $name;
	}
}
ok(@externs > 100, 'the walk finds the externs: ' . scalar(@externs));
my @lonely;
for my $name (@externs)
{
	my @users = files_using($name);
	next if @users >= 2;
	# a worker's entry point: bgw_function_name names it
	next if grep { $c{$_} =~ /"\Q$name\E"/ } @users;
	push @lonely, "$name (" . (join(', ', @users) || 'no file') . ')';
}
diag(join("\n", @lonely)) if @lonely; is_deeply(\@lonely, [], 'every extern of include/ is used by a second file of src/ (else make it static)');

# 2. every #define is used (the ERRCODE_OCX_ registry is docs.pl's, against docs/errors.md)
my @unused;
for my $file (sort(keys %h), sort(keys %c))
{
	my $text = $h{$file} // $c{$file};
	for my $name ($text =~ /^#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)/mg)
	{
		next if $name =~ /^ERRCODE_OCX_/ || $name =~ /_H$/;
		my $uses = 0;
		# a header's macro may be used anywhere, a .c file's only in it
		for my $t ($h{$file} ? (values %h, values %c) : ($text))
		{
			my @m = $t =~ /\b\Q$name\E\b/g;
			$uses += @m;
		}
		push @unused, "$file: $name" if $uses < 2;
	}
}
is_deeply(\@unused, [], 'every #define of include/ and src/ is used');

# 3. workers wait on their latch, never pg_usleep
is_deeply([ grep { $c{$_} =~ /\bpg_usleep\s*\(/ } sort keys %c ], [], 'no pg_usleep in src/ (WaitLatch)');

# 4. one PostgreSQL major: the only version test is the one that refuses the others
my @branches;
for my $file (sort(keys %h), sort(keys %c))
{
	my $text = $h{$file} // $c{$file};
	push @branches, map { "$file: $_" } grep { !/PG_VERSION_NUM < 150000 \|\| PG_VERSION_NUM >= 160000/ }
	  ($text =~ /^(#\s*(?:if|elif)[^\n]*(?:PG_VERSION_NUM|PG_MAJORVERSION)[^\n]*)/mg);
}
is_deeply(\@branches, [], 'no test of the PostgreSQL version but the refusal of other majors (include/ocx.h)');

done_testing();
