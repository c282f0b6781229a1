#!/usr/bin/perl
# META.json (the PGXN distribution metadata) against the PGXN Meta Spec 1.0.0,
# checked by its rules as written in the spec (https://pgxn.org/spec/): the
# mandatory fields and their types, SemVer versions, the license terms, the
# prereq phases and relations, and against the checkout: the distribution and
# the extension carry ocx.control's default_version, the file it names exists,
# the Debian changelog's version is the same.  Needs no server.
use strict;
use warnings;
use File::Basename qw(dirname);
use File::Spec;
use JSON::PP;
use Test::More;

my $root = File::Spec->rel2abs(dirname(__FILE__) . '/../..');
chdir $root or die "cannot chdir to $root: $!";

sub slurp
{
	my ($f) = @_;
	open my $fh, '<:raw', $f or die "cannot read $f: $!";
	local $/;
	return scalar <$fh>;
}

my $meta = eval { JSON::PP->new->utf8->decode(slurp('META.json')) };
ok($meta, 'META.json is valid JSON') or BAIL_OUT("META.json: $@");

# SemVer 1.0.0 as the spec requires (major.minor.patch, an optional
# alphanumeric pre-release tag, no leading zeros)
my $semver = qr/^(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)(?:-?[A-Za-z][0-9A-Za-z-]*)?$/;
my $term = qr/^[^\s\/\\:]{2,}$/;    # "term": no whitespace, slash, backslash or colon, 2+ chars

my %license_terms = map { $_ => 1 } qw(
  agpl_3 apache_1_1 apache_2_0 artistic_1 artistic_2 bsd freebsd gfdl_1_2
  gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1 lgpl_3_0 mit mozilla_1_0 mozilla_1_1
  openssl perl_5 postgresql qpl_1_0 ssleay sun zlib open_source restricted
  unrestricted unknown);

for my $f (qw(name abstract version maintainer license provides meta-spec))
{
	ok(exists $meta->{$f}, "mandatory field '$f' is present");
}
like($meta->{name} // '', $term, 'name is a term');
ok(!ref $meta->{abstract} && length($meta->{abstract} // '') > 0, 'abstract is a non-empty string');
like($meta->{version} // '', $semver, 'version is a SemVer');

my $m = $meta->{maintainer};
ok((!ref $m && length $m) || (ref $m eq 'ARRAY' && @$m && !grep { ref $_ || !length $_ } @$m),
	'maintainer is a string or a non-empty list of strings');

my $l = $meta->{license};
my $license_ok =
	(!ref $l && $license_terms{$l // ''})
	|| (ref $l eq 'ARRAY' && @$l && !grep { ref $_ || !$license_terms{$_} } @$l)
	|| (ref $l eq 'HASH' && %$l && !grep { $l->{$_} !~ m{^https?://} } keys %$l);
ok($license_ok, 'license is a spec term, a list of terms, or a map of names to URLs');

is(ref $meta->{'meta-spec'}, 'HASH', 'meta-spec is an object');
is($meta->{'meta-spec'}{version}, '1.0.0', 'meta-spec version is 1.0.0');

is(ref $meta->{provides}, 'HASH', 'provides is an object');
for my $ext (sort keys %{ $meta->{provides} || {} })
{
	my $p = $meta->{provides}{$ext};
	like($ext, $term, "provides: '$ext' is a term");
	ok(defined $p->{file} && defined $p->{version}, "provides.$ext has file and version");
	like($p->{version} // '', $semver, "provides.$ext.version is a SemVer");
	for my $k (keys %$p)
	{
		ok(grep({ $k eq $_ } qw(file version abstract docfile)) || $k =~ /^x_/i,
			"provides.$ext.$k is a field the spec defines");
	}
}

my %phases = map { $_ => 1 } qw(configure build test runtime develop);
my %relations = map { $_ => 1 } qw(requires recommends suggests conflicts);
for my $phase (sort keys %{ $meta->{prereqs} || {} })
{
	ok($phases{$phase}, "prereqs phase '$phase' is one the spec defines");
	for my $rel (sort keys %{ $meta->{prereqs}{$phase} })
	{
		ok($relations{$rel}, "prereqs.$phase relation '$rel' is one the spec defines");
		for my $dep (sort keys %{ $meta->{prereqs}{$phase}{$rel} })
		{
			my $v = $meta->{prereqs}{$phase}{$rel}{$dep};
			ok($v eq '0' || $v =~ $semver || $v =~ /^(?:[<>]=?|==|!=)\s*\S/,
				"prereqs.$phase.$rel.$dep is 0, a SemVer or a version range");
		}
	}
}
ok(!exists $meta->{release_status} || $meta->{release_status} =~ /^(stable|testing|unstable)$/,
	'release_status is stable, testing or unstable');
ok(!exists $meta->{tags} || (ref $meta->{tags} eq 'ARRAY' && !grep { ref $_ || length($_) > 255 || !length $_ } @{ $meta->{tags} }),
	'tags are non-empty strings of at most 255 characters');
for my $k (keys %$meta)
{
	ok(grep({ $k eq $_ } qw(name abstract description version maintainer license provides
		prereqs resources no_index release_status generated_by tags meta-spec)) || $k =~ /^x_/i,
		"top-level field '$k' is one the spec defines (or x_)");
}

# against the checkout
my ($control_version) = slurp('ocx.control') =~ /^default_version\s*=\s*'([^']+)'/m;
is($meta->{version}, $control_version, 'META.json version equals ocx.control default_version');
is($meta->{provides}{ocx}{version}, $control_version, 'provides.ocx.version equals ocx.control default_version');
is($meta->{provides}{ocx}{file}, "sql/ocx--$control_version.sql", 'provides.ocx.file is the install script of that version');
ok(-f $meta->{provides}{ocx}{docfile}, 'provides.ocx.docfile exists');
my ($deb_version) = slurp('debian/changelog') =~ /^ocx \(([^)]+)\)/;
like($deb_version // '', qr/^\Q$control_version\E(?:-\d+)?$/, 'debian/changelog is at the same version');

done_testing();
