# The bulk import of events with personal data (issues 14 and 16): a type
# with ocx.define_personal_data is imported with its personal fields
# encrypted under the subject's data key, as an append stores them (before,
# the import refused such rows with OX661).  The plaintext is in no ocx
# table; the events read in clear; the hash chain verifies; importing the
# same rows again writes nothing (compared in clear), a changed personal
# field at a stored version is refused; a row without its subject's id or
# with a string that looks like encrypted data is refused with its line and
# nothing of the batch is written; ocx.forget_subject waits for an import in
# flight and then erases what it imported; an export (in clear, for a
# caller allowed to see it) imported into another database is encrypted
# there under that database's keys.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxPrivacy;

my $node = privacy_node('import_personal');

my $email = 'carol.import.4c2e@example.com';
my $street = 'Importweg 8192';

for my $db ('postgres', 'target')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db") if $db ne 'postgres';
	$node->safe_psql($db, q{
CREATE EXTENSION ocx;
SELECT ocx.define_personal_data('CustomerRegistered', 'customer_id', '{email,address.street}');
-- a batch from a JSON array: import_begin, the staged rows, import_commit
CREATE FUNCTION try_import(rows jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    PERFORM ocx.import_begin();
    INSERT INTO ocx.import_staging (stream_id, stream_version, type, data, event_id)
    SELECT x->>'stream_id', x->>'stream_version', x->>'type', x->>'data', x->>'event_id'
      FROM jsonb_array_elements(rows) WITH ORDINALITY AS a(x, n) ORDER BY n;
    SELECT * INTO r FROM ocx.import_commit();
    RETURN format('events %s skipped %s streams %s', r.events, r.skipped, r.streams);
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
});
}

my $rows = qq{[
  {"stream_id": "customer-c1", "stream_version": "1", "type": "CustomerRegistered", "event_id": "0190a000-0000-7000-8000-000000000001",
   "data": {"customer_id": "c1", "email": "$email", "address": {"street": "$street", "city": "Clearcity"}}},
  {"stream_id": "customer-c1", "stream_version": "2", "type": "Noted", "event_id": "0190a000-0000-7000-8000-000000000002",
   "data": {"note": "no personal data"}},
  {"stream_id": "customer-c2", "stream_version": "1", "type": "CustomerRegistered", "event_id": "0190a000-0000-7000-8000-000000000003",
   "data": {"customer_id": 2, "email": "dave\@example.com", "address": {"city": "Elsewhere"}}}
]};

is($node->safe_psql('postgres', "SELECT try_import('$rows')"), 'events 3 skipped 0 streams 2',
	'a batch with personal data is imported (it was refused with OX661)');
is(ocx_tables_containing($node, 'postgres', $email), '', 'the imported email is in no ocx table');
is(ocx_tables_containing($node, 'postgres', $street), '', 'nor the street');
like(ocx_tables_containing($node, 'postgres', 'Clearcity'), qr/ocx\.events\.data/,
	'the field without a definition is stored in clear (the query finds what is there)');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM ocx.events WHERE data->>'email' LIKE 'ocx:pd1:%' AND data->'address'->>'street' LIKE 'ocx:pd1:%'}),
	'1', 'c1\'s email and street are stored as markers');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.subject_keys}), '2',
	'one data key per subject (a number as subject id counts)');
is($node->safe_psql('postgres', q{
SELECT string_agg(format('%s/%s %s %s', stream_id, stream_version, data->>'email', data->'address'->>'street'), ';'
                  ORDER BY global_position) FROM ocx.read_all()}),
	"customer-c1/1 $email $street;customer-c1/2  ;customer-c2/1 dave\@example.com ",
	'the imported events read in clear (superuser)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify()}), '0', 'ocx.verify() is clean after the import');

# a key made by the import is the one appends use
$node->safe_psql('postgres', qq{SELECT ocx.append('customer-c1', 2, '{"type": "CustomerRegistered", "data": {"customer_id": "c1", "email": "second\@example.com"}}')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM ocx.subject_keys}), '2', 'an append of c1 after the import uses the key the import created');

# the same rows again: written nothing, compared in clear
is($node->safe_psql('postgres', "SELECT try_import('$rows')"), 'events 0 skipped 3 streams 0',
	'importing the same rows again writes nothing (the personal fields compared in clear)');
(my $changed = $rows) =~ s/\Q$street\E/Otherstreet 1/;
like($node->safe_psql('postgres', "SELECT try_import('$changed')"),
	qr/^OX001 line 1: version 1 of stream "customer-c1" is stored already, as another event/,
	'a changed personal field at a stored version is refused with its line');

# bad rows: refused with their lines, nothing of the batch written
my $before = $node->safe_psql('postgres', q{SELECT count(*) || '/' || (SELECT count(*) FROM ocx.subject_keys) FROM ocx.events});
my $bad = $node->safe_psql('postgres', q{
SELECT try_import('[
  {"stream_id": "customer-c3", "stream_version": "1", "type": "CustomerRegistered", "data": {"customer_id": "c3", "email": "e3@example.com"}},
  {"stream_id": "customer-c4", "stream_version": "1", "type": "CustomerRegistered", "data": {"email": "nobody@example.com"}},
  {"stream_id": "customer-c5", "stream_version": "1", "type": "CustomerRegistered", "data": {"customer_id": "c5", "note": "ocx:pd1:00000000-0000-0000-0000-000000000000:AAAA"}}
]')});
like($bad, qr/^OX623 line 2: event 2 of type "CustomerRegistered" has no data subject at "customer_id"/,
	'a row without its data subject is refused with its line (OX623)');
my ($rc, $out, $err) = $node->psql('postgres', q{
DO $$
DECLARE d text;
BEGIN
    PERFORM ocx.import_begin();
    INSERT INTO ocx.import_staging (stream_id, stream_version, type, data) VALUES
        ('customer-c4', '1', 'CustomerRegistered', '{"email": "nobody@example.com"}'),
        ('customer-c5', '1', 'CustomerRegistered', '{"customer_id": "c5", "note": "ocx:pd1:00000000-0000-0000-0000-000000000000:AAAA"}');
    PERFORM ocx.import_commit();
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS d = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'detail:%', d;
END $$});
like($err, qr/line 2: .*starting with "ocx:pd1:" at "note".*OX621/s,
	'a string that looks like encrypted personal data is refused with its line (OX621), listed with the others');
is($node->safe_psql('postgres', q{SELECT count(*) || '/' || (SELECT count(*) FROM ocx.subject_keys) FROM ocx.events}),
	$before, 'nothing of a refused batch is written: no event, no data key');

# forget_subject waits for an import in flight, then erases what it imported
my $bg = $node->background_psql('postgres', on_error_stop => 1);
$bg->query_safe(q{BEGIN});
$bg->query_safe(q{SELECT ocx.import_begin()});
$bg->query_safe(q{INSERT INTO ocx.import_staging (stream_id, stream_version, type, data) VALUES
    ('customer-c6', '1', 'CustomerRegistered', '{"customer_id": "c6", "email": "frank@example.com"}')});
$bg->query_safe(q{SELECT * FROM ocx.import_commit()});
my $forget = $node->background_psql('postgres', on_error_stop => 1);
$forget->query_until(qr/forgetting/, q{\echo forgetting
SELECT ocx.forget_subject('c6');
});
ok($node->poll_query_until('postgres', q{
SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
 WHERE NOT l.granted AND a.query LIKE '%forget_subject%'}),
	'ocx.forget_subject waits for the import in flight');
$bg->query_safe(q{COMMIT});
$bg->quit;
$forget->quit;
is($node->safe_psql('postgres', q{SELECT key_destroyed FROM ocx.erasures WHERE subject_hash = encode(sha256('c6'), 'hex')}),
	't', 'then it destroys the key the import created');
is($node->safe_psql('postgres', q{
SELECT format('%s %s', data->>'email' IS NULL, metadata->>'erased') FROM ocx.read_stream('customer-c6')}),
	't true', 'and the imported event reads erased');

# an export (in clear for a caller allowed to see it) into another database
my $file = $node->basedir . '/personal.ndjson';
$node->safe_psql('postgres', qq{COPY (SELECT cloudevent FROM ocx.export('customer'))
    TO '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02')});
is((split /\n/, $node->safe_psql('target', qq{
BEGIN;
SELECT ocx.import_begin();
COPY ocx.import_staging (cloudevent) FROM '$file' (FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02');
SELECT format('%s %s', events, skipped) FROM ocx.import_commit();
COMMIT;}))[-1], '5 0', 'the export imports into another database');
is(ocx_tables_containing($node, 'target', $email), '', 'where the email is in no ocx table either');
is($node->safe_psql('target', q{
SELECT string_agg(format('%s/%s %s', stream_id, stream_version, data->>'email'), ';' ORDER BY global_position)
  FROM ocx.read_all()}),
	"customer-c1/1 $email;customer-c1/2 ;customer-c2/1 dave\@example.com;customer-c1/3 second\@example.com;customer-c6/1 ",
	'and the events read in clear under its own keys, in the log order of the source (the erased one stays erased)');
is($node->safe_psql('target', q{SELECT count(*) FROM ocx.subject_keys}), '3',
	'its keys: c1, c2 and c6 (whose fields came erased: null, nothing to encrypt, but the subject has a key)');
is($node->safe_psql('target', q{SELECT count(*) FROM ocx.verify()}), '0', 'ocx.verify() is clean there');

$node->stop;
done_testing();
