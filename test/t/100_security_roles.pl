# Issue 10's reproductions, kept as they were found against 0.2.0: no lower
# role becomes superuser through an upcaster, an edited definition table, a
# superuser's inline projection or a setting left behind by another handler.
# Then a probe walks every place the worker and the append path call user
# code and shows each runs as its author, with ocx's search_path; and an
# author that loses ocx_admin runs nothing.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('security');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
});
$node->start;

sub as_role
{
	my ($role, $sql) = @_;
	my ($out, $err);
	my $rc = $node->psql('postgres', $sql, stdout => \$out, stderr => \$err,
		extra_params => [ '-U', $role, '-v', 'VERBOSITY=verbose' ]);
	return ($rc, $out, $err);
}

sub is_superuser
{
	my ($role) = @_;
	return $node->safe_psql('postgres', "SELECT rolsuper FROM pg_roles WHERE rolname = '$role'");
}

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE ROLE ad LOGIN IN ROLE ocx_admin;
CREATE ROLE wr LOGIN IN ROLE ocx_writer;
CREATE ROLE rd LOGIN IN ROLE ocx_reader;
GRANT CREATE ON SCHEMA public TO ad;
GRANT CREATE ON DATABASE postgres TO ad;
-- any async projection over every event, defined by the superuser
CREATE TABLE seen (stream_id text, type text, data jsonb);
CREATE FUNCTION see(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.seen VALUES (e.stream_id, e.type, e.data) $$;
SELECT ocx.define_projection('everything', 'see(ocx.event)');
});

# 1. ocx_admin -> superuser through an upcaster (the worker read the batch as
#    the bootstrap superuser and ran the transform as such)
my ($rc, $out, $err) = as_role('ad', q{
CREATE FUNCTION public.evil_up(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
  EXECUTE 'ALTER ROLE ad SUPERUSER'; END IF; RETURN d; END $$;
SELECT ocx.define_event_type('Sneaky', 2);
SELECT ocx.define_upcaster('Sneaky', 1, 'public.evil_up(jsonb)'::regprocedure);
SELECT ocx.append('sneaky-1', NULL, '{"type":"Sneaky","schema_version":1,"data":{}}');
});
is($rc, 0, '1: the admin defines an upcaster and appends') or diag($err);
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM seen WHERE stream_id = 'sneaky-1'}),
	'1: the worker read the event (through the upcaster) and projected it');
is(is_superuser('ad'), 'f', '1: the upcaster ran as its author: ad is not superuser');

# 2. ocx_admin -> superuser by editing definition tables
($rc, $out, $err) = as_role('ad', q{
CREATE FUNCTION public.evil_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
  EXECUTE 'ALTER ROLE ad SUPERUSER'; END IF; END $$;
CREATE FUNCTION public.evil_cmd(c ocx.command) RETURNS void LANGUAGE plpgsql AS $$
BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
  EXECUTE 'ALTER ROLE ad SUPERUSER'; END IF; END $$;
SELECT ocx.define_projection('evil', 'public.evil_handler(ocx.event)', types => '{Evil}');
SELECT ocx.define_command_handler('evil.Cmd', 'public.evil_cmd(ocx.command)');
});
is($rc, 0, '2: the admin defines a projection and a command handler') or diag($err);
($rc, $out, $err) = as_role('ad', q{UPDATE ocx.projections SET owner = 'postgres' WHERE name = 'evil'});
like($err, qr/42501/, '2: UPDATE ocx.projections SET owner is refused (42501)');
($rc, $out, $err) = as_role('ad',
	q{UPDATE ocx.command_handlers SET handler_role = 'postgres' WHERE command_type = 'evil.Cmd'});
like($err, qr/42501/, '2: UPDATE ocx.command_handlers SET handler_role is refused (42501)');
is($node->safe_psql('postgres', q{SELECT owner FROM ocx.projections WHERE name = 'evil'}), 'ad',
	'2: the projection is still recorded as ad\'s');
as_role('ad', q{SELECT ocx.append_event('evil-1', NULL, 'Evil', '{}');
                SELECT ocx.send_command('evil.Cmd', '{}', command_id => 'e0000000-0000-4000-8000-000000000001')});
ok($node->poll_query_until('postgres',
	q{SELECT (SELECT lag_events = 0 FROM ocx.projection_status WHERE name = 'evil')
	     AND (SELECT status = 'succeeded' FROM ocx.commands WHERE command_id = 'e0000000-0000-4000-8000-000000000001')}),
	'2: the append and the command were handled');
is(is_superuser('ad'), 'f', '2: both ran as ad: ad is not superuser');

# 3. ocx_writer -> superuser through a superuser's inline projection; the
#    writer's temp objects came first in name lookup, even with SET
#    search_path = public on the handler
$node->safe_psql('postgres', q{
CREATE TABLE inl_model (pos bigint);
CREATE FUNCTION inl_handler(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO inl_model VALUES (e.global_position) $$;
CREATE FUNCTION inl_handler_path(e ocx.event) RETURNS void LANGUAGE sql SET search_path = public
    AS $$ INSERT INTO inl_model VALUES (e.global_position) $$;
SELECT ocx.define_projection('inl', 'inl_handler(ocx.event)', types => '{Inl}', mode => 'inline');
});
ok($node->poll_query_until('postgres', q{SELECT state = 'running' FROM ocx.projections WHERE name = 'inl'}),
	'3: the inline projection is running');
my $writer_attack = q{
CREATE TEMP TABLE inl_model(pos bigint);
CREATE FUNCTION pg_temp.trg() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN EXECUTE 'ALTER ROLE wr SUPERUSER'; RETURN NEW; END$$;
CREATE TRIGGER t BEFORE INSERT ON pg_temp.inl_model FOR EACH ROW EXECUTE FUNCTION pg_temp.trg();
SELECT ocx.append_event('inl-1', NULL, 'Inl', '{}');   -- wr is now SUPERUSER
SELECT count(*) AS temp_rows FROM pg_temp.inl_model;
};
($rc, $out, $err) = as_role('wr', $writer_attack);
is($rc, 0, '3: the writer\'s append runs the inline handler') or diag($err);
is(is_superuser('wr'), 'f', '3: the handler did not resolve to the writer\'s temp table: wr is not superuser');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.inl_model}), '1',
	'3: the handler wrote its own table');
like($out, qr/^0$/m, '3: and nothing into the writer\'s temp table');

$node->safe_psql('postgres', q{
SELECT ocx.define_projection('inl', 'inl_handler_path(ocx.event)', types => '{Inl}', mode => 'inline')});
($rc, $out, $err) = as_role('wr', $writer_attack);
like($err, qr/OX503/, '3: with SET search_path = public (pg_temp implicitly first) the append is refused (OX503)');
is(is_superuser('wr'), 'f', '3: ... and wr is not superuser');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.events WHERE stream_id = 'inl-1'}), '1',
	'3: ... and the refused append wrote nothing');
($rc, $out, $err) = as_role('wr', q{SELECT ocx.append_event('inl-1', NULL, 'Inl', '{}')});
is($rc, 0, '3: the same append from a session without temporary objects works') or diag($err);
$node->safe_psql('postgres', q{SELECT ocx.drop_projection('inl')});

# 4. settings leak between async handlers: an admin's handler sets
#    search_path for the session, the next handler (a superuser's) ran with it
($rc, $out, $err) = as_role('ad', q{
CREATE SCHEMA evil;
CREATE FUNCTION evil.lower(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
  EXECUTE 'ALTER ROLE ad SUPERUSER'; END IF; RETURN t; END $$;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION public.a_setter(e ocx.event) RETURNS void LANGUAGE sql
    AS $$ SELECT set_config('search_path', 'evil, pg_catalog, public', false) $$;
SELECT ocx.define_projection('a_settings', 'public.a_setter(ocx.event)', types => '{Leak}');
});
is($rc, 0, '4: the admin defines a handler that changes search_path for the session') or diag($err);
$node->safe_psql('postgres', q{
CREATE TABLE victim_saw (path text, lowered text);
CREATE FUNCTION b_victim(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN INSERT INTO public.victim_saw VALUES (current_setting('search_path'), lower('X')); END $$;
SELECT ocx.define_projection('b_settings', 'b_victim(ocx.event)', types => '{Leak}');
SELECT ocx.append_event('leak-1', NULL, 'Leak', '{}');
});
ok($node->poll_query_until('postgres', q{SELECT count(*) = 1 FROM victim_saw}), '4: both handlers ran');
is($node->safe_psql('postgres', q{SELECT path || ' ' || lowered FROM victim_saw}), '"$user", public, pg_temp x',
	'4: the superuser\'s handler started from ocx\'s search_path, not the one the other handler set');
is(is_superuser('ad'), 'f', '4: evil.lower never ran as postgres');

# Every place user code runs, probed: it runs as its author (ad), in the
# session of whoever caused it, with ocx's search_path.
$node->safe_psql('postgres', q{
CREATE ROLE ad2 LOGIN IN ROLE ocx_admin;
CREATE TABLE public.probe (site text, cu text, su text, sp text);
ALTER TABLE public.probe OWNER TO ad;
CREATE TABLE public.probe_fixed (ok boolean);
ALTER TABLE public.probe_fixed OWNER TO ad;
});
($rc, $out, $err) = as_role('ad', q{
CREATE FUNCTION public.probe_at(site text) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.probe VALUES (site, current_user, session_user, current_setting('search_path')) $$;
CREATE FUNCTION public.probe_up(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM public.probe_at('upcaster ' || (d->>'via')); RETURN d; END $$;
CREATE FUNCTION public.probe_apply(s jsonb, e ocx.event) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN PERFORM public.probe_at('apply'); RETURN s; END $$;
CREATE FUNCTION public.probe_async(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'ProbeFail' AND NOT EXISTS (SELECT FROM public.probe_fixed) THEN
        RAISE EXCEPTION 'not yet';
    END IF;
    PERFORM public.probe_at(CASE WHEN e.type = 'ProbeFail' THEN 'flaky handler' ELSE 'async handler' END);
END $$;
CREATE FUNCTION public.probe_inline(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN PERFORM public.probe_at('inline handler'); END $$;
CREATE FUNCTION public.probe_reset() RETURNS void LANGUAGE plpgsql AS $$
BEGIN PERFORM public.probe_at('reset'); END $$;
CREATE FUNCTION public.probe_cmd(c ocx.command) RETURNS void LANGUAGE plpgsql AS $$
BEGIN PERFORM public.probe_at('command handler'); END $$;
SELECT ocx.define_event_type('ProbeOld', 2);
SELECT ocx.define_upcaster('ProbeOld', 1, 'public.probe_up(jsonb)'::regprocedure);
SELECT ocx.define_aggregate('probe', 'public.probe_apply(jsonb, ocx.event)');
SELECT ocx.define_projection('probe_async', 'public.probe_async(ocx.event)', types => '{ProbeAsync,ProbeFail}',
                             retry => '{"max_attempts": 1}', reset => 'public.probe_reset()');
SELECT ocx.define_projection('probe_inline', 'public.probe_inline(ocx.event)', types => '{ProbeInline}',
                             mode => 'inline');
SELECT ocx.define_command_handler('probe.Cmd', 'public.probe_cmd(ocx.command)');
});
is($rc, 0, 'probe: ad defines one of each kind of user code') or diag($err);
ok($node->poll_query_until('postgres',
	q{SELECT state = 'running' FROM ocx.projections WHERE name = 'probe_inline'}), 'probe: inline is running');
($rc, $out, $err) = as_role('wr', q{
SELECT ocx.append('probe-1', NULL, '{"type": "ProbeOld", "schema_version": 1, "data": {"via": "in reader session"}}');
SELECT ocx.append_event('probe-2', NULL, 'ProbeInline', '{}');
SELECT ocx.append_event('probe-3', NULL, 'ProbeAsync', '{}');
SELECT ocx.append_event('probe-4', NULL, 'ProbeFail', '{}');
SELECT ocx.send_command('probe.Cmd', '{}');
});
is($rc, 0, 'probe: the writer appends and sends') or diag($err);
($rc, $out, $err) = as_role('rd', q{
SELECT data FROM ocx.read_stream('probe-1');
SELECT state FROM ocx.load('probe', 'probe-2');
});
is($rc, 0, 'probe: the reader reads and loads') or diag($err);
ok($node->poll_query_until('postgres',
	q{SELECT (SELECT dead_letters = 1 AND lag_events = 0 FROM ocx.projection_status WHERE name = 'probe_async')
	     AND EXISTS (SELECT FROM public.probe WHERE site = 'command handler')}),
	'probe: the worker handled the async events (one parked) and the command');
$node->safe_psql('postgres', q{INSERT INTO public.probe_fixed VALUES (true)});
($rc, $out, $err) = as_role('ad2', q{
SELECT ocx.retry_dead_letter(id) FROM ocx.dead_letters WHERE projection = 'probe_async';
SELECT ocx.rebuild_projection('probe_async');
});
is($rc, 0, 'probe: another admin retries the dead letter and rebuilds the projection') or diag($err);
ok($node->poll_query_until('postgres',
	q{SELECT state = 'running' AND lag_events = 0 FROM ocx.projection_status WHERE name = 'probe_async'}),
	'probe: the rebuild replayed the projection');
my $sp = '"$user", public, pg_temp';
is($node->safe_psql('postgres', q{
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
  SELECT DISTINCT site || ': ' || cu || ' in ' || su || '''s session, ' || sp AS x
    FROM public.probe WHERE site NOT LIKE 'upcaster%') d}),
	join("\n",
		"apply: ad in rd's session, $sp",
		"async handler: ad in postgres's session, $sp",
		"command handler: ad in postgres's session, $sp",
		"flaky handler: ad in ad2's session, $sp",
		"flaky handler: ad in postgres's session, $sp",
		"inline handler: ad in wr's session, $sp",
		"reset: ad in ad2's session, $sp"),
	'probe: every call of user code ran as its author, ad, with ocx\'s search_path (retry_dead_letter and reset in ad2\'s session)');
is($node->safe_psql('postgres',
	q{SELECT string_agg(DISTINCT su, ',' ORDER BY su) FROM public.probe WHERE site LIKE 'upcaster%'}),
	'postgres,rd,wr', 'probe: the upcaster ran in the reader\'s session, the worker\'s and the writer\'s (inline projections read the new events)');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM public.probe WHERE cu <> 'ad' OR sp <> '"$user", public, pg_temp'}),
	'0', 'probe: no call ran as anyone else (the worker\'s upcaster included) or with another search_path');

# A role that lost its grants runs nothing.
$node->safe_psql('postgres', q{REVOKE ocx_admin FROM ad; DELETE FROM public.probe;});
($rc, $out, $err) = as_role('wr', q{SELECT ocx.append_event('probe-5', NULL, 'ProbeInline', '{}')});
like($err, qr/OX502/, 'revoked: the inline handler of a former admin stops the append (OX502)');
($rc, $out, $err) = as_role('rd', q{SELECT data FROM ocx.read_stream('probe-1')});
like($err, qr/OX502/, 'revoked: reading an event its upcaster must convert is refused (OX502)');
($rc, $out, $err) = as_role('rd', q{SELECT state FROM ocx.load('probe', 'probe-3')});
like($err, qr/OX502/, 'revoked: loading through its apply function is refused (OX502)');
as_role('wr', q{SELECT ocx.append_event('probe-6', NULL, 'ProbeAsync', '{}')});
ok($node->poll_query_until('postgres',
	q{SELECT sqlstate = 'OX502' FROM ocx.dead_letters WHERE projection = 'probe_async' AND stream_id = 'probe-6'}),
	'revoked: the async projection fails with OX502 instead of running the handler (parked)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.probe}), '0', 'revoked: no user code of ad ran');

$node->stop;
done_testing();
