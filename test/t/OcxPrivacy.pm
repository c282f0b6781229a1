# What the personal-data TAP tests share (t/191, t/194, t/199, t/218): a node with
# a random key-encryption key as ocx.privacy_key_file, and the ocx tables
# whose text, jsonb or bytea columns hold a string.
package OcxPrivacy;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use Exporter 'import';

our @EXPORT = qw(privacy_node ocx_tables_containing);

# A started node with ocx preloaded, a 32-byte key file and a 100 ms naptime
# (further arguments go to init: allows_streaming => 1 for a primary).
sub privacy_node
{
	my ($name, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	my $kek = $node->basedir . '/kek';
	open(my $kf, '>', $kek) or die "kek: $!";
	binmode $kf;
	print $kf join('', map { chr(int(rand(256))) } 1 .. 32);
	close $kf;
	chmod 0600, $kek;
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '100ms'
ocx.privacy_key_file = '$kek'
});
	$node->start;
	return $node;
}

# "rel.column " for every text, jsonb, json, bytea (and text[]) column of
# every ocx table in which some value contains needle; '' when none does.
sub ocx_tables_containing
{
	my ($node, $db, $needle) = @_;
	my ($rc, $out, $err) = $node->psql($db, qq{
DO \$\$
DECLARE r record; n bigint; hits text := '';
BEGIN
    FOR r IN SELECT c.oid::regclass AS rel, a.attname
               FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE c.relnamespace = 'ocx'::regnamespace AND c.relkind IN ('r', 'p')
                AND a.attnum > 0 AND NOT a.attisdropped
                AND a.atttypid IN ('text'::regtype, 'jsonb'::regtype, 'json'::regtype, 'bytea'::regtype,
                                   'text[]'::regtype, 'varchar'::regtype, 'name'::regtype)
    LOOP
        EXECUTE format('SELECT count(*) FROM %s WHERE %I::text LIKE %L', r.rel, r.attname,
                       '%' || '$needle' || '%') INTO n;
        IF n > 0 THEN hits := hits || r.rel || '.' || r.attname || ' '; END IF;
    END LOOP;
    RAISE NOTICE 'hits:%', hits;
END \$\$;
});
	die "query failed: $err" if $rc != 0;
	return $err =~ /hits:(.*)$/m ? $1 : "no answer: $err";
}

1;
