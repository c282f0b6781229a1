# Upgrades: install the first release, update step by step with ALTER EXTENSION
# UPDATE, and check that the result equals a fresh install of the current
# version, object by object, with the data kept.  Also a pg_dump / pg_restore
# round trip of the upgraded database.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'ocx'\nocx.databases = 'none'");
$node->start;

my $current = $node->safe_psql('postgres',
    q{SELECT default_version FROM pg_available_extensions WHERE name = 'ocx'});
my @versions = split /\n/, $node->safe_psql('postgres',
    q{SELECT version FROM pg_available_extension_versions WHERE name = 'ocx' ORDER BY string_to_array(version, '.')::int[]});
ok(@versions >= 2, "more than one version is installable (@versions)");
my $first = $versions[0];

# Every object of the extension, described by its definition.
my $describe = q{
WITH ext AS (SELECT oid FROM pg_extension WHERE extname = 'ocx'),
members AS (SELECT classid, objid FROM pg_depend, ext WHERE refclassid = 'pg_extension'::regclass
            AND refobjid = ext.oid AND deptype = 'e')
SELECT string_agg(d, E'\n' ORDER BY d) FROM (
  SELECT 'function ' || p.oid::regprocedure::text || ' -> ' || pg_get_function_result(p.oid)
         || ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict::text || p.prosecdef::text
         || ' ' || coalesce(array_to_string(p.proconfig, ','), '') || ' '
         || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, 'default')
         || ' ' || coalesce(obj_description(p.oid, 'pg_proc'), '') AS d
    FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
    WHERE p.prokind <> 'a'
  UNION ALL
  SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity::text
         || c.relforcerowsecurity::text || ' ' || coalesce(c.relacl::text, 'default') || ' '
         || coalesce(obj_description(c.oid, 'pg_class'), '')
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
  UNION ALL
  SELECT 'column ' || a.attrelid::regclass::text || '.' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text
         || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') || ' ' || a.attnum
         || ' ' || coalesce(a.attacl::text, 'default') || ' ' || coalesce(col_description(a.attrelid, a.attnum), '')
    FROM pg_attribute a JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = a.attrelid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  -- the attributes of composite types (ocx.event, ocx.command): their pg_class row is
  -- not an extension member, the type is
  SELECT 'attribute ' || t.oid::regtype::text || '.' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnum || ' '
         || coalesce((SELECT co.collname FROM pg_collation co WHERE co.oid = a.attcollation AND a.attcollation <> 100), '')
         || ' ' || coalesce(col_description(a.attrelid, a.attnum), '')
    FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
    JOIN pg_attribute a ON a.attrelid = t.typrelid
    WHERE t.typtype = 'c' AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM pg_index i JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = i.indrelid
  UNION ALL
  SELECT 'constraint ' || co.conrelid::regclass::text || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
    FROM pg_constraint co JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = co.conrelid
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
    FROM pg_trigger t JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = t.tgrelid
    WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'policy ' || po.polrelid::regclass::text || ' ' || po.polname || ' ' || po.polcmd::text || ' '
         || coalesce(pg_get_expr(po.polqual, po.polrelid), '') || ' '
         || coalesce(pg_get_expr(po.polwithcheck, po.polrelid), '') || ' ' || po.polpermissive::text
         || ' to ' || array_to_string(ARRAY(SELECT CASE r WHEN 0 THEN 'public' ELSE r::regrole::text END
                                             FROM unnest(po.polroles) r ORDER BY 1), ',')
    FROM pg_policy po JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = po.polrelid
  UNION ALL
  SELECT 'view ' || c.oid::regclass::text || ' ' || md5(pg_get_viewdef(c.oid))
    FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid
    WHERE c.relkind IN ('v', 'm')
  UNION ALL
  SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text || ' ' || coalesce(t.typacl::text, 'default')
         || ' ' || coalesce(obj_description(t.oid, 'pg_type'), '')
    FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
  UNION ALL
  SELECT 'operator ' || o.oid::regoperator::text || ' ' || o.oprcode::text
    FROM pg_operator o JOIN members m ON m.classid = 'pg_operator'::regclass AND m.objid = o.oid
  UNION ALL
  SELECT 'opclass ' || oc.opcname
    FROM pg_opclass oc JOIN members m ON m.classid = 'pg_opclass'::regclass AND m.objid = oc.oid
  UNION ALL
  SELECT 'config ' || string_agg(c::regclass::text, ',' ORDER BY c::regclass::text)
    FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'ocx'
  UNION ALL
  SELECT 'members ' || count(*) FROM members
) s};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION ocx');
my $want = $node->safe_psql('fresh', $describe);

$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('upgraded', "CREATE EXTENSION ocx VERSION '$first'");
$node->safe_psql('upgraded', q{
SELECT ocx.append('acct-1', 0, '[{"type": "Opened", "data": {"owner": "ann"}},
                                 {"type": "Deposited", "data": {"amount": 100}}]')});
# a subscription and a saga named as 0.2.0 allowed (up to 200 characters, any
# character) but the one name rule of 0.3.0 does not
my $legacy_sub = 'legacy subscription ' . ('x' x 80);
my $update_warnings = '';
for my $v (@versions[1 .. $#versions]) {
    my ($rc, $out, $err) = $node->psql('upgraded', "ALTER EXTENSION ocx UPDATE TO '$v'");
    is($rc, 0, "ALTER EXTENSION ocx UPDATE TO '$v'") or diag($err);
    $update_warnings = $err if $v eq $current;
    next unless $v eq '0.2.0';
    # a projection whose retry policy is stored in the 0.2.0 keys
    $node->safe_psql('upgraded', q{
CREATE FUNCTION public.upg_handler(e ocx.event) RETURNS void LANGUAGE sql AS 'SELECT';
SELECT ocx.define_projection('upg', 'public.upg_handler(ocx.event)',
    retry => '{"attempts": 7, "base_delay_ms": 250, "max_delay_ms": 5000, "on_exhausted": "stop"}')});
    $node->safe_psql('upgraded', qq{
SELECT ocx.create_subscription('$legacy_sub', ARRAY['Deposited']);
SELECT ocx.define_saga('legacy saga', '{"steps": [{"name": "ship", "command": "upg.Ship", "success": "upg.Shipped"}]}')});
}
is($node->safe_psql('upgraded', q{SELECT extversion FROM pg_extension WHERE extname = 'ocx'}),
   $current, "updated step by step from $first to $current");
my $got = $node->safe_psql('upgraded', $describe);
if ($got ne $want) {
    my %w = map { $_ => 1 } split /\n/, $want;
    my %g = map { $_ => 1 } split /\n/, $got;
    diag("only in the fresh install: $_") for grep { !$g{$_} } sort keys %w;
    diag("only in the upgraded one: $_") for grep { !$w{$_} } sort keys %g;
}
ok($got eq $want, 'the upgraded extension equals a fresh install, object by object');

is($node->safe_psql('upgraded', q{SELECT retry FROM ocx.projections WHERE name = 'upg'}),
   '{"max_delay": "00:00:05", "base_delay": "00:00:00.25", "on_failure": "skip", "max_attempts": 7, "on_exhausted": "stop"}',
   'a stored retry policy is rewritten into the one shape');
is($node->safe_psql('upgraded', q{SELECT string_agg(type, ',' ORDER BY stream_version) FROM ocx.read_stream('acct-1')}),
   'Opened,Deposited', 'events appended before the upgrade are read after it');
is($node->safe_psql('upgraded', q{SELECT count(*) FROM ocx.events WHERE hash IS NULL}) . ' '
   . $node->safe_psql('upgraded', q{SELECT count(*) FROM ocx.verify()}),
   '0 0', 'the upgrade hashed and chained the events appended before it: verify() is clean');
is($node->safe_psql('upgraded', q{SELECT ocx.append_event('acct-1', 2, 'Deposited', '{"amount": 5}')}),
   '3', 'appending goes on at the right version after the upgrade');

# names that break the one name rule survive the upgrade: listed in a WARNING,
# still usable, refused only when defined again
like($update_warnings, qr/WARNING:  ocx 0\.3\.0: these names break the one name rule: saga 'legacy saga', subscription '\Q$legacy_sub\E'/,
   'the update to the current version warns of the names that break the name rule');
is($node->safe_psql('upgraded', qq{SELECT string_agg(DISTINCT type, ',') FROM ocx.poll('$legacy_sub', 10)}),
   'Deposited', 'a subscription with a 0.2.0 name is polled after the upgrade');
my ($drc, $dout, $derr) = $node->psql('upgraded', qq{SELECT ocx.define_subscription('$legacy_sub', ARRAY['Deposited'])},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($derr, qr/ERROR:  OX500:/, 'but defining it again under that name is OX500');

# pg_dump keeps the log and the streams, and the restore works
my $dump = $node->basedir . '/upgraded.dump';
$node->command_ok(['pg_dump', '-Fc', '-d', $node->connstr('upgraded'), '-f', $dump], 'pg_dump');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
{
	# as pg_restore names itself (the harness sets PGAPPNAME), so the worker
	# waits for the restore (docs/operations.md): no seal between the COPYs
	local $ENV{PGAPPNAME} = 'pg_restore';
	$node->command_ok(['pg_restore', '-d', $node->connstr('restored'), $dump], 'pg_restore');
}
is($node->safe_psql('restored', q{SELECT count(*) || '/' || ocx.stream_version('acct-1') FROM ocx.read_stream('acct-1')}),
   '3/3', 'a restored database has the events and the stream versions');
is($node->safe_psql('restored', qq{SELECT count(*) FROM ocx.subscriptions WHERE name = '$legacy_sub'}
                                 . q{ UNION ALL SELECT count(*) FROM ocx.saga_definitions WHERE name = 'legacy saga'}),
   "1\n1", 'the 0.2.0 names are restored into a fresh install of the current version');
is($node->safe_psql('restored', q{SELECT ocx.append_event('acct-1', 3, 'Deposited', '{"amount": 1}')}),
   '4', 'and accepts appends where the original left off');
my ($rc, $out, $err) = $node->psql('restored', q{SELECT ocx.append_event('acct-1', 3, 'X', '{}')},
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  OX001:/, 'with the expected-version check intact (OX001)');

$node->stop;
done_testing();
