# Fuzz: 10,000 seeded random calls of every public ocx function with random
# NULLs, sizes, nesting and types, as superuser, as a member of ocx_writer and
# as a member of ocx_admin. Asserts: no internal error (XX000, OX000), no
# crash, backend memory under 100 MB, and the log unchanged by every failed
# call (and every event appended by a call that succeeded).
# Replay a run with OCX_FUZZ_SEED=<seed> (printed first); OCX_FUZZ_CALLS
# changes the number of calls (default 10000).  With OCX_FUZZ_STANDBY=1
# (t/214) the calls go to a hot standby of the set-up database (default
# 3000 calls): every one that would write must be refused as read-only, not
# with an internal error, and none may crash the standby.  OCX_FUZZ_SET adds
# a setting to every session of the calls (t/215: a serializable isolation
# level, where appends take the statement path instead of the direct write;
# t/216: read-only transactions, where nothing may be written; t/219: a
# tenant).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $seed = $ENV{OCX_FUZZ_SEED} // 20261204;
my $on_standby = $ENV{OCX_FUZZ_STANDBY} // 0;
my $session_set = $ENV{OCX_FUZZ_SET} // '';
my $read_only = $on_standby || $session_set =~ /read_only\s*=\s*on/;
my $ncalls = $ENV{OCX_FUZZ_CALLS} // ($on_standby || $session_set ne '' ? 3000 : 10000);
my $batch = 500;
my $mem_limit = 100 * 1024 * 1024;
diag("ocx fuzz seed: $seed (replay: OCX_FUZZ_SEED=$seed), calls: $ncalls"
	  . ($on_standby ? ', on a standby' : '') . ($session_set ne '' ? ", SET $session_set" : ''));
srand($seed);
my $t_start = time();

my $node = PostgreSQL::Test::Cluster->new('fuzz');
$node->init(allows_streaming => $on_standby);
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.naptime = '1s'
max_prepared_transactions = 2
});
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
CREATE FUNCTION fz_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE FUNCTION fz_bad_handler(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'fz'; END $$;
CREATE FUNCTION fz_apply(s jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql AS $$ SELECT s || jsonb_build_object('v', e.stream_version) $$;
CREATE FUNCTION fz_null_apply(s jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION fz_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT d || '{"up": true}' $$;
CREATE FUNCTION fz_null_up(d jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION fz_reset() RETURNS void LANGUAGE plpgsql AS $$ BEGIN NULL; END $$;
CREATE FUNCTION fz_cmd(c ocx.command) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION fz_dropped(e ocx.event) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE TABLE fz_oid AS SELECT 'fz_dropped(ocx.event)'::regprocedure::oid AS oid;
CREATE TABLE fz_model (n int);
CREATE VIEW fz_view AS SELECT 1 AS n;
DROP FUNCTION fz_dropped(ocx.event);
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;
-- something for the calls to find
SELECT ocx.define_event_type('Evt', 1, '{"type": "object"}');
SELECT ocx.define_aggregate('p1', 'fz_apply(jsonb,ocx.event)');
SELECT ocx.define_projection('p1', 'fz_handler(ocx.event)');
SELECT ocx.create_subscription('s1');
SELECT ocx.define_saga('saga1', '{"steps": [{"name": "a", "command": "Cmd", "success": "Evt"}]}');
SELECT ocx.append('fz-1', NULL, '[{"type": "Evt", "data": {"n": 1}}, {"type": "Other", "data": {}}]');
SELECT ocx.send_command('Cmd', '{}');
-- the calling backend's memory: its contexts and its private resident memory
CREATE FUNCTION fz_mem(OUT ctx bigint, OUT anon bigint) LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT sum(total_bytes) INTO ctx FROM pg_backend_memory_contexts;
    SELECT (regexp_match(pg_read_file('/proc/self/status'), 'RssAnon:\s+(\d+) kB'))[1]::bigint * 1024 INTO anon;
END $$;
GRANT EXECUTE ON FUNCTION fz_mem() TO PUBLIC;
-- retention batches recorded so far (ocx.removals is owner-only: docs/security.md)
CREATE FUNCTION fz_retention_batches() RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$ SELECT count(*) FROM ocx.removals WHERE kind = 'retention' $$;
GRANT EXECUTE ON FUNCTION fz_retention_batches() TO PUBLIC;
CREATE ROLE fz_writer LOGIN IN ROLE ocx_writer;
CREATE ROLE fz_admin LOGIN IN ROLE ocx_admin;
});
my $dropped_oid = $node->safe_psql('postgres', 'SELECT oid FROM fz_oid');

# the node the calls go to: the primary, or a hot standby of it
my $target = $node;
if ($on_standby)
{
	$node->backup('fz');
	$target = PostgreSQL::Test::Cluster->new('fuzz_standby');
	$target->init_from_backup($node, 'fz', has_streaming => 1);
	$target->start;
	$node->wait_for_catchup($target, 'replay');
}

# the public functions, from the catalog
my @funcs;
for my $line (split /\n/, $node->safe_psql('postgres', q{
    SELECT p.oid::regprocedure::text || '|' || p.proname || '|' ||
           coalesce(array_to_string(p.proargtypes::regtype[], ','), '')
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = 'ocx' AND p.proname !~ '^_' AND p.prokind = 'f'
       AND p.prorettype NOT IN ('trigger'::regtype, 'cstring'::regtype)
       AND NOT ('internal'::regtype = ANY (p.proargtypes::oid[]))
       AND NOT ('cstring'::regtype = ANY (p.proargtypes::oid[]))
       AND p.prorettype <> 'event_trigger'::regtype
     ORDER BY 1}))
{
	my ($sig, $name, $args) = split /\|/, $line, -1;
	push @funcs, { sig => $sig, name => $name, args => [ $args eq '' ? () : split(/,/, $args) ] };
}
cmp_ok(scalar(@funcs), '>=', 50, 'public functions found: ' . scalar(@funcs));
my %seen_type;
$seen_type{$_}++ for map { @{ $_->{args} } } @funcs;
diag('argument types: ' . join(', ', sort keys %seen_type));

# --- the generator ---------------------------------------------------------
sub pick { return $_[ int(rand(scalar @_)) ]; }
sub chance { return rand() < $_[0]; }
my $sane = 0;    # per call: mostly plausible arguments, so that calls get past validation
sub nul { return chance($sane ? 0.03 : $_[0]); }
sub q_lit { my $s = shift; $s =~ s/'/''/g; return "'$s'"; }

my @names = ('fz-1', 'fz-2', 'fz-3', 'order-1', 'order-2', 'p1', 'p2', 's1', 's2',
	'saga1', 'Cmd', 'Evt', 'Other', 'c1', 'x', ' ', 'ü€😀', "it's", 'a-b-c', 'ocx_x',
	'chan', 'fz_handler(ocx.event)');
my @uuids = map { sprintf('%08x-%04x-4%03x-8%03x-%012x', int(rand(2**32)), int(rand(65536)),
		int(rand(4096)), int(rand(4096)), int(rand(2**40))) } 1 .. 6;
push @uuids, '00000000-0000-0000-0000-000000000000';

sub rand_str {
	my $n = pick(0, 1, 3, 8, 20, 60);
	return join('', map { pick('a' .. 'z', 'A', '-', '.', '/', ' ', "'", '"', '\\', '{', '[', 'é', '€', '%', '_', '$') } 1 .. $n);
}

# text: returns (sql, value) where value is the text (undef for NULL)
sub gen_text {
	my $r = rand();
	$r = 0.5 if $sane && $r > 0.03;
	return ('NULL', undef) if $r < 0.2;
	return (q_lit(''), '') if $r < 0.25;
	if ($r < 0.29) {
		my $n = pick(1024, 1025, 5000, 100000, 1000000);
		return ("repeat('x', $n)", 'x' x $n);
	}
	if ($r < 0.45) { my $s = rand_str(); return (q_lit($s), $s); }
	my $s = pick(@names);
	return (q_lit($s), $s);
}
sub gen_int {
	my ($big) = @_;
	my $r = rand();
	return pick('NULL', 0, 1, 2, 5, 10) if $sane;
	return 'NULL' if $r < 0.2;
	return pick(0, 1, 2, 3, 5, 10, 100) if $r < 0.6;
	return pick(-1, -2, -100, -2147483648) if $r < 0.75;
	return pick(2147483647, 100000, 100001, 1024, 1025, 10000, 10001) if $r < 0.9 || !$big;
	return pick('9223372036854775807', '-9223372036854775808', '4294967296', '1000000000000');
}
sub rand_json {
	my ($d) = @_;
	my $r = rand();
	if ($d > 0 && $r < 0.3) {
		return '{' . join(',', map { '"' . pick('type', 'data', 'a', 'id', 'metadata', 'x' . $_, '') . '":' . rand_json($d - 1) } 1 .. int(rand(4))) . '}';
	}
	if ($d > 0 && $r < 0.5) {
		return '[' . join(',', map { rand_json($d - 1) } 1 .. int(rand(4))) . ']';
	}
	return pick('null', 'true', 'false', '0', '-1', '1.5e300', '"s"', '""', '"2026-01-01T00:00:00Z"',
		'"' . pick(@uuids) . '"', '12345678901234567890', '"\u00e9"');
}
sub rand_event {
	my %e;
	$e{type} = '"' . pick('Evt', 'Other', 'Cmd', '', 'T' x 300) . '"' if chance(0.9);
	$e{data} = chance(0.8) ? '{"n": ' . int(rand(10)) . ', "s": "v"}' : rand_json(2) if chance(0.8);
	$e{metadata} = chance(0.7) ? '{"m": 1}' : rand_json(1) if chance(0.3);
	$e{id} = '"' . pick(@uuids, 'not-a-uuid') . '"' if chance(0.3);
	$e{correlation_id} = '"' . pick(@uuids) . '"' if chance(0.1);
	$e{schema_version} = pick('1', '2', '0', '-1', '"x"') if chance(0.1);
	$e{time} = pick('"2026-01-01T00:00:00Z"', '"yesterday"', '"2026-01-01"') if chance(0.1);
	$e{source} = '"' . pick('src', '') . '"' if chance(0.1);
	$e{bogus} = '1' if chance(0.05);
	return '{' . join(',', map { "\"$_\": $e{$_}" } sort keys %e) . '}';
}
sub rand_cloudevent {
	my %e;
	$e{specversion} = pick('"1.0"', '"0.3"', '1') if chance(0.9);
	$e{id} = '"' . pick(@uuids, 'ce-1', '') . '"' if chance(0.9);
	$e{source} = '"' . pick('/src', 'urn:x', '') . '"' if chance(0.9);
	$e{type} = '"' . pick('Evt', 'com.example.x', '') . '"' if chance(0.9);
	$e{data} = rand_json(2) if chance(0.6);
	$e{data_base64} = pick('"aGVsbG8="', '"!!!"', '""') if chance(0.1);
	$e{time} = pick('"2026-01-01T00:00:00Z"', '"never"') if chance(0.2);
	$e{datacontenttype} = '"application/json"' if chance(0.2);
	$e{'bad-name'} = '1' if chance(0.05);
	return '{' . join(',', map { "\"$_\": $e{$_}" } sort keys %e) . '}';
}
sub gen_jsonb {
	my $r = rand();
	$r = 0.33 + rand(0.49) if $sane;
	return 'NULL' if $r < 0.15;
	return q_lit(pick('null', '{}', '[]', '0', '"s"', 'true')) . '::jsonb' if $r < 0.25;
	if ($r < 0.30) {
		my $d = pick(33, 100, 300, 500);
		return pick("(repeat('[', $d) || repeat(']', $d))::jsonb",
			"(repeat('{\"a\":', $d) || '1' || repeat('}', $d))::jsonb",
			"('{\"type\": \"Evt\", \"data\": ' || repeat('{\"a\":', $d) || '1' || repeat('}', $d) || '}')::jsonb");
	}
	if ($r < 0.33) {
		my $n = pick(1000, 100000, 1000000);
		return pick("(SELECT jsonb_agg(g) FROM generate_series(1, $n) g)",
			"jsonb_build_object('type', 'Evt', 'data', jsonb_build_object('s', repeat('x', $n)))",
			"(SELECT jsonb_agg(jsonb_build_object('type', 'Evt', 'data', '{}'::jsonb)) FROM generate_series(1, " . int($n / 100) . "))",
			"(SELECT jsonb_object_agg('k' || g, g) FROM generate_series(1, $n) g)");
	}
	return q_lit(rand_event()) . '::jsonb' if $r < 0.5;
	return q_lit('[' . join(',', map { rand_event() } 1 .. int(rand(4))) . ']') . '::jsonb' if $r < 0.6;
	return q_lit(rand_cloudevent()) . '::jsonb' if $r < 0.68;
	return q_lit('[' . join(',', map { rand_cloudevent() } 1 .. int(rand(3))) . ']') . '::jsonb' if $r < 0.72;
	return q_lit(pick(
		'{"attempts": 3, "base_delay_ms": 10}', '{"attempts": -1}', '{"on_exhausted": "stop"}',
		'{"max_attempts": 3, "base_delay": "10 ms", "on_failure": "park_stream"}', '{"base_delay": 5}',
		'{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}',
		'{"type": "nope"}', '{"$ref": "#"}',
		'{"Evt": {"n": {"add": "$.data.n"}}}', '{"Evt": {"set": 1}}',
		'{"rename": {"a": "b"}}', '{"steps": [{"name": "a", "command": "Cmd", "success": "Evt"}]}',
		'{"steps": [{"name": "a", "command": "Cmd", "success": "Evt", "data": {"x": "$.input.y"}}]}',
		'{"steps": []}', '{"event_types": [], "aggregates": [], "projections": []}',
		'{"event_types": [{"type": "Evt", "schema_version": 1, "schema": {}}]}',
		))
		. '::jsonb' if $r < 0.82;
	return q_lit(rand_json(pick(1, 3, 6))) . '::jsonb' if $r < 0.97;
	return q_lit(rand_str()) . '::jsonb';    # mostly not JSON at all
}
sub gen_uuid {
	return 'NULL' if nul(0.25);
	return q_lit(pick(@uuids)) . '::uuid' if chance(0.85);
	return pick("(SELECT command_id FROM ocx.commands ORDER BY command_id LIMIT 1)",
		"(SELECT saga_id FROM ocx.saga_instances ORDER BY saga_id LIMIT 1)",
		"(SELECT event_id FROM ocx.events ORDER BY global_position DESC LIMIT 1)");
}
sub gen_cursor_text {
	return pick('0/0', '1/1', '3/7', '18446744073709551615/9223372036854775807', '5/-1', '-1/5',
		'x/y', '', '/', '1/', '1/2/3', '99999999999999999999/1', ' 1 / 2 ', '1/2x');
}
sub gen_cursor {
	return 'NULL' if nul(0.25);
	return q_lit(gen_cursor_text()) . '::ocx.cursor' if chance(0.7);
	return pick("(SELECT ocx.cursor(txid, global_position) FROM ocx.events ORDER BY global_position DESC LIMIT 1)",
		'ocx.cursor(' . pick("'1'", "'0'", "'18446744073709551615'") . '::xid8, ' . gen_int(1) . ')');
}
sub gen_event {
	return 'NULL' if nul(0.2);
	return '(SELECT r FROM ocx.read_all(NULL::ocx.cursor, 50) r OFFSET ' . int(rand(20)) . ' LIMIT 1)' if chance(0.4);
	my @f = (gen_int(1), (gen_text())[0], gen_int(1), gen_uuid(), (gen_text())[0], (gen_text())[0],
		gen_int(0), gen_ts(), gen_jsonb(), gen_jsonb(), gen_uuid(), gen_uuid(), (gen_text())[0],
		pick('NULL', "'1'", "'18446744073709551615'") . '::xid8', gen_cursor());
	my @t = qw(bigint text bigint uuid text text integer timestamptz jsonb jsonb uuid uuid text xid8 ocx.cursor);
	return 'ROW(' . join(', ', map { "($f[$_])::$t[$_]" } 0 .. $#f) . ')::ocx.event';
}
sub gen_ts {
	return 'NULL' if nul(0.3);
	return q_lit(pick('infinity', '-infinity', '2000-01-01 00:00:00+00', '2100-01-01 00:00:00+00',
		'294276-12-31 00:00:00+00', '4713-01-01 00:00:00+00 BC', '1970-01-01 00:00:00+00')) . '::timestamptz';
}
sub gen_interval {
	return 'NULL' if nul(0.25);
	return q_lit(pick('0', '1 second', '-1 second', '1 hour', '-5 days', '178000000 years',
		'-178000000 years', '1 microsecond', '30 seconds', 'infinity')) . '::interval';
}
sub gen_regproc {
	return 'NULL' if nul(0.2);
	return "'$dropped_oid'::oid::regprocedure" if chance(0.1);
	return "'4294967295'::oid::regprocedure" if chance(0.03);
	return q_lit(pick('fz_handler(ocx.event)', 'fz_bad_handler(ocx.event)', 'fz_apply(jsonb,ocx.event)',
		'fz_null_apply(jsonb,ocx.event)', 'fz_up(jsonb)', 'fz_null_up(jsonb)', 'fz_reset()',
		'fz_cmd(ocx.command)', 'ocx.metrics()', 'now()', 'abs(integer)', 'fz_mem()',
		'ocx.to_cloudevent(ocx.event)', 'fz_nonexistent(jsonb)')) . '::regprocedure';
}
sub gen_text_array {
	return 'NULL' if nul(0.25);
	return pick("'{}'::text[]", 'ARRAY[NULL]::text[]', "ARRAY['Evt', NULL]::text[]", "ARRAY['Evt']",
		"ARRAY['Evt', 'Other', 'Cmd']", "ARRAY['fz', 'order']", "ARRAY['']",
		"(SELECT array_agg('t' || g) FROM generate_series(1, 100000) g)",
		"ARRAY[repeat('x', 100000)]", "'{{a,b},{c,d}}'::text[]",
		'ARRAY[' . join(', ', map { q_lit(rand_str()) } 1 .. int(rand(5)) + 1) . ']');
}
sub gen_regclass_array {
	return 'NULL' if nul(0.6);    # most define_projection calls declare no tables
	return pick("'{}'::regclass[]", 'ARRAY[NULL]::regclass[]', "ARRAY['fz_model']::regclass[]",
		"ARRAY['fz_model', 'fz_model']::regclass[]", "ARRAY['pg_class']::regclass[]",
		"ARRAY['fz_view']::regclass[]", "ARRAY['ocx.events']::regclass[]", "'{{fz_model}}'::regclass[]",
		"ARRAY['4294967295'::oid::regclass]");
}
sub gen_arg {
	my ($type) = @_;
	return (gen_text())[0] if $type eq 'text';
	return gen_int(1) if $type eq 'bigint';
	return gen_int(0) if $type eq 'integer';
	return pick('NULL', 'true', 'false') if $type eq 'boolean';
	return gen_jsonb() if $type eq 'jsonb';
	return gen_uuid() if $type eq 'uuid';
	return gen_cursor() if $type eq 'ocx.cursor';
	return gen_event() if $type eq 'ocx.event';
	return gen_ts() if $type eq 'timestamp with time zone';
	return gen_interval() if $type eq 'interval';
	return gen_regproc() if $type eq 'regprocedure';
	return gen_text_array() if $type eq 'text[]';
	return gen_regclass_array() if $type eq 'regclass[]';
	return pick('NULL', "'0'", "'1'", "'18446744073709551615'", 'pg_current_xact_id()') if $type eq 'xid8';
	die "no generator for argument type $type";
}

my %appenders = map { $_ => 1 } qw(append append_event append_cloudevents);
# one call: SQL text, and the stream id value an append would write to
sub gen_call {
	my ($f) = @_;
	$sane = chance(0.5);
	my @a;
	my $stream;
	for my $i (0 .. $#{ $f->{args} }) {
		my $t = $f->{args}[$i];
		if ($i == 0 && $appenders{ $f->{name} }) {
			my ($sql, $val) = gen_text();
			$stream = $val;
			push @a, "($sql)::text";
			next;
		}
		push @a, '(' . gen_arg($t) . ")::$t";
	}
	return ("SELECT count(*) FROM ocx.$f->{name}(" . join(', ', @a) . ')', $stream);
}

# --- the runs --------------------------------------------------------------
my %states;          # SQLSTATE => count
my %fstates;         # function => { SQLSTATE => count }
my @internal;        # calls that raised XX000 / OX000
my @log_changed;     # failed calls after which the log had changed
my %ok_streams = ('fz-1' => 1);    # stream ids of appends that succeeded (fz-1: the set-up's)
my $max_ctx = 0;
my $max_anon = 0;
my $done = 0;
my $lost = 0;
my @roles = (('postgres') x 14, ('fz_writer') x 4, ('fz_admin') x 2);   # 70/20/10 %

my $b = 0;
while ($done < $ncalls) {
	my $n = $ncalls - $done < $batch ? $ncalls - $done : $batch;
	my $role = $roles[ $b % @roles ];
	$b++;
	my @calls;
	my $script = "\\set QUIET on\n\\o /dev/null\nSET statement_timeout = '10s';\n"
		. "SET client_min_messages = error;\n"
		. ($session_set ne '' ? "SET $session_set;\n" : '')
		. "SELECT count(*) AS fz_n, coalesce(max(global_position), 0) AS fz_m, "
		. "fz_retention_batches() AS fz_r FROM ocx.events \\gset\n"
		. "\\echo \@L :fz_n :fz_m :fz_r\n";
	for my $i (0 .. $n - 1) {
		# every function in turn, then at random
		my $f = ($done + $i) < @funcs * 10 ? $funcs[ ($done + $i) % @funcs ] : pick(@funcs);
		my ($sql, $stream) = gen_call($f);
		push @calls, { f => $f->{sig}, sql => $sql, stream => $stream, appends => $appenders{ $f->{name} } };
		$script .= "$sql;\n\\echo \@R $i :SQLSTATE\n"
			. "SELECT count(*) AS fz_n, coalesce(max(global_position), 0) AS fz_m, "
			. "fz_retention_batches() AS fz_r FROM ocx.events \\gset\n"
			. "\\echo \@L :fz_n :fz_m :fz_r\n";
		$script .= "SELECT * FROM fz_mem() \\gset\n\\echo \@M :ctx :anon\n" if $i % 100 == 99 || $i == $n - 1;
	}
	my ($stdout, $stderr);
	$target->psql('postgres', $script, stdout => \$stdout, stderr => \$stderr,
		extra_params => [ '-U', $role ], on_error_stop => 0, timeout => 300);
	my @lines = split /\n/, $stdout;
	my ($prev, $cur, $last_i, $prev_r, $prev_max);
	for my $l (@lines) {
		# the worker's retention (docs/retention.md) removes events on its own,
		# recording each batch in ocx.removals, but never adds one: a failed
		# call that raised the highest position wrote to the log, always; any
		# other change is the call's when no retention batch happened meanwhile
		if ($l =~ /^\@L (\d+) (\d+) (\d+)$/) {
			my ($max, $removals) = ($2, $3);
			$cur = "$1/$2";
			if (defined $last_i) {
				my $c = $calls[$last_i];
				push @log_changed, "$c->{f}: $c->{sql} ($prev -> $cur)"
					if $c->{state} ne '00000' && $cur ne $prev
					&& ($max > $prev_max || $removals eq $prev_r);
				undef $last_i;
			}
			$prev = $cur;
			$prev_max = $max;
			$prev_r = $removals;
		}
		elsif ($l =~ /^\@R (\d+) (\S+)$/) {
			my $c = $calls[$1];
			$c->{state} = $2;
			$last_i = $1;
			$states{$2}++;
			$fstates{ $c->{f} }{$2}++;
			push @internal, "[$role] $2 $c->{f}: $c->{sql}" if $2 eq 'XX000' || $2 eq 'OX000';
			$ok_streams{ $c->{stream} } = 1 if $2 eq '00000' && $c->{appends} && defined $c->{stream};
		}
		elsif ($l =~ /^\@M (\d+) (\d+)$/) {
			$max_ctx = $1 if $1 > $max_ctx;
			$max_anon = $2 if $2 > $max_anon;
		}
	}
	my $answered = grep { defined $_->{state} } @calls;
	if ($answered != $n) {
		$lost += $n - $answered;
		my ($first) = grep { !defined $_->{state} } @calls;
		diag("batch $b ($role): only $answered of $n calls answered; first unanswered: $first->{f}: "
			. substr($first->{sql}, 0, 500) . "\nstderr tail: " . substr($stderr // '', -2000));
	}
	$done += $n;
}
my $elapsed = time() - $t_start;

diag(sprintf('%d calls in %.1f s; SQLSTATEs: %s', $done, $elapsed,
	join(', ', map { "$_ x$states{$_}" } sort keys %states)));
diag(sprintf('backend memory peak: contexts %.1f MB, private resident %.1f MB',
	$max_ctx / 1048576, $max_anon / 1048576));
my @never_ok = grep { !$fstates{$_}{'00000'} } map { $_->{sig} } @funcs;
diag('functions no call succeeded for: ' . (join(', ', @never_ok) || 'none'));

is($lost, 0, 'every call answered (no lost connection)');
is(scalar(grep { !$fstates{ $_->{sig} } } @funcs), 0, 'every public function called');
is(join("\n", @internal), '', 'no internal error (XX000 / OX000)');
ok($target->safe_psql('postgres', 'SELECT 1') eq '1', 'the server is up');
ok(!$target->log_contains(qr/terminated by signal|was terminated|server process .* exited with exit code|PANIC/),
	'no backend crashed');
cmp_ok($max_ctx, '<', $mem_limit, 'backend memory contexts stay under 100 MB');
cmp_ok($max_anon, '<', $mem_limit, 'backend private resident memory stays under 100 MB');
is(join("\n", @log_changed), '', 'the log is unchanged by every failed call');
my @streams = split /\n/, $target->safe_psql('postgres',
	'SELECT DISTINCT stream_id FROM ocx.events ORDER BY 1');
# ocx.forget_subject appends ocx.SubjectForgotten to ocx.privacy-<hash> in the
# transaction that records the erasure: a stream of an erasure that committed
$ok_streams{$_} = 1 for split /\n/, $target->safe_psql('postgres',
	q{SELECT DISTINCT 'ocx.privacy-' || left(subject_hash, 32) FROM ocx.erasures});
my @foreign = grep { !$ok_streams{$_} } @streams;
is(join(', ', map { length($_) > 40 ? substr($_, 0, 40) . '...' : $_ } @foreign), '',
	'every event in the log was appended by a call that succeeded (' . scalar(@streams) . ' streams)');
if ($read_only)
{
	is(join(', ', grep { $_ ne 'fz-1' } @streams), '', 'no call wrote' . ($on_standby ? ' on the standby' : ''));
	$target->stop if $on_standby;
}
else
{
	cmp_ok(scalar(@streams), '>', 0, 'some appends succeeded');
}

$node->stop;
done_testing();
