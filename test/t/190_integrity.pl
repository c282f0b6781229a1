# Tamper evidence (issue 14): a superuser disables the immutability trigger
# and edits one event's data, another's time, deletes a third and inserts a
# fourth; ocx.verify() reports exactly those four.  A signed seal verifies
# with its public key and fails with another; the external verifier
# (test/node/verify_proof.mjs, Node's crypto only) accepts a proof from
# ocx.prove and rejects it for the edited event.  Also: the worker seals on
# its own, a recorded removal (ocx.removals) is reported as authorised and
# the stream verifies from its first kept event, a key file others can read
# is refused.
use strict;
use warnings;
use FindBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $verifier = "$FindBin::Bin/../node/verify_proof.mjs";
my $have_node = system('node --version >/dev/null 2>&1') == 0;

my $node = PostgreSQL::Test::Cluster->new('integrity');
$node->init;
my $dir = $node->basedir;
for my $k ('seal', 'other') {
    system("openssl genpkey -algorithm ed25519 -out $dir/$k.pem 2>/dev/null") == 0
      or BAIL_OUT('openssl genpkey failed');
    system("openssl pkey -in $dir/$k.pem -pubout -out $dir/$k.pub 2>/dev/null") == 0
      or BAIL_OUT('openssl pkey failed');
    chmod 0600, "$dir/$k.pem";
}
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.seal_interval = 0
ocx.seal_signing_key_file = '$dir/seal.pem'
});
$node->start;
my $pub = slurp_file("$dir/seal.pub");
my $other = slurp_file("$dir/other.pub");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION ocx;
SELECT ocx.append('acct-1', 0, '{"type": "Opened", "data": {"owner": "ann"}}');
SELECT ocx.append('acct-1', 1, '[{"type": "Deposited", "data": {"amount": 10}},
                                 {"type": "Deposited", "data": {"amount": 20}, "tags": ["t1"]}]');
SELECT ocx.append_event('acct-1', 3, 'Withdrawn', '{"amount": 5}');
SELECT ocx.append('acct-2', NULL, '[{"type": "Opened", "data": {}}, {"type": "Deposited", "data": {"amount": 1}}]');
SELECT ocx.append('acct-2', NULL, '{"type": "Deposited", "data": {"amount": 2}, "id": "6f1c2c5e-9d55-4d0b-a8f6-6a9c4b8d1e01"}');
});
is(sql(q{SELECT count(*) FROM ocx.events WHERE hash IS NULL OR length(hash) <> 32}), '0',
   'every appended event carries a 32-byte hash');
is(sql(q{SELECT count(*) FROM ocx.streams s WHERE s.head IS DISTINCT FROM
         (SELECT e.hash FROM ocx.events e WHERE e.stream_id = s.stream_id ORDER BY e.stream_version DESC LIMIT 1)}),
   '0', "every stream's head is its last event's hash");
is(sql(q{SELECT count(*) FROM ocx.verify()}), '0', 'an untouched log verifies clean');

# a signed seal: verifies with its public key, fails with another
my $seal = sql(q{SELECT ocx.seal()});
ok($seal =~ /^\d+$/, "ocx.seal() sealed the log (seal $seal)");
is(sql(qq{SELECT events, key_id IS NOT NULL, length(signature) FROM ocx.seals WHERE seal_id = $seal}),
   '7|t|64', 'the seal covers the 7 events and is signed');
is(sql(qq{SELECT ocx.verify_seal($seal, \$k\$$pub\$k\$)}), 't', 'the seal verifies with its public key');
is(sql(qq{SELECT ocx.verify_seal($seal, \$k\$$other\$k\$)}), 'f', 'and fails with another key');
is(sql(qq{SELECT count(*) FROM ocx.verify(NULL, \$k\$$pub\$k\$)}), '0', 'verify() with the right key: clean');
is(sql(qq{SELECT seal_id || ': ' || problem FROM ocx.verify(NULL, \$k\$$other\$k\$)}),
   "$seal: seal signature does not verify with the public key", 'verify() with another key reports the seal');

# the external verifier accepts a proof
my $target = sql(q{SELECT event_id FROM ocx.events WHERE stream_id = 'acct-1' AND stream_version = 2});
sub external_check {
    my ($key) = @_;
    my $proof = sql(qq{SELECT ocx.prove('$target')});
    open(my $fh, '>', "$dir/proof.json") or die;
    print $fh $proof;
    close $fh;
    my $out = `node $verifier $dir/proof.json $key 2>&1`;
    chomp $out;
    return ($? >> 8, $out);
}
SKIP: {
    skip 'node is not installed', 2 unless $have_node;
    my ($rc, $out) = external_check("$dir/seal.pub");
    is("$rc $out", '0 ok', 'the external verifier accepts the proof of a sealed event');
    ($rc, $out) = external_check("$dir/other.pub");
    is($rc, 1, "and rejects it against another key ($out)");
}

# events after the seal
sql(q{SELECT ocx.append('acct-3', 0, '[{"type": "A", "data": {"n": 1}}, {"type": "A", "data": {"n": 2}},
                                     {"type": "A", "data": {"n": 3}}, {"type": "A", "data": {"n": 4}}]')});
is(sql(q{SELECT count(*) FROM ocx.verify()}), '0', 'still clean after more appends');

# the superuser tampers with four events
sql(q{
ALTER TABLE ocx.events DISABLE TRIGGER events_immutable_row;
UPDATE ocx.events SET data = '{"amount": 10000}' WHERE stream_id = 'acct-1' AND stream_version = 2;
UPDATE ocx.events SET time = time - interval '1 day' WHERE stream_id = 'acct-3' AND stream_version = 2;
DELETE FROM ocx.events WHERE stream_id = 'acct-3' AND stream_version = 3;
INSERT INTO ocx.events (stream_id, stream_version, event_id, source, type, time, data, metadata, txid, hash)
SELECT stream_id, 4, gen_random_uuid(), source, 'Deposited', now(), '{"amount": 99}', metadata, txid, hash
  FROM ocx.events WHERE stream_id = 'acct-2' AND stream_version = 3;
ALTER TABLE ocx.events ENABLE ALWAYS TRIGGER events_immutable_row;
});
is(sql(q{SELECT string_agg(stream || '/' || version || ' ' || authorised, ', ' ORDER BY stream, version)
         FROM ocx.verify()}),
   'acct-1/2 false, acct-2/4 false, acct-3/2 false, acct-3/3 false',
   'verify() reports exactly the four tampered events');
is(sql(q{SELECT string_agg(problem, ' | ' ORDER BY stream, version) FROM ocx.verify()}),
   "hash does not match the stored fields and the previous hash | event beyond the stream's version 3 | "
   . 'hash does not match the stored fields and the previous hash | versions 3..3 missing',
   'each with what is wrong');
is(sql(q{SELECT count(*) FROM ocx.verify('acct-2')}), '1', 'verify(stream_id) checks that stream only');
is(sql(qq{SELECT ocx.verify_seal($seal, \$k\$$pub\$k\$)}), 't',
   'the seal still holds (it covers the stored hashes; the edit is in the fields)');
SKIP: {
    skip 'node is not installed', 1 unless $have_node;
    my ($rc, $out) = external_check("$dir/seal.pub");
    is($rc, 1, "the external verifier rejects the proof of the edited event ($out)");
}

# a removal recorded in ocx.removals: authorised, and the stream verifies
# from its first kept event against the recorded head
sql(q{
SELECT ocx.append('tele-1', 0, '[{"type": "T", "data": {"n": 1}}, {"type": "T", "data": {"n": 2}},
                                 {"type": "T", "data": {"n": 3}}, {"type": "T", "data": {"n": 4}}]');
ALTER TABLE ocx.events DISABLE TRIGGER events_immutable_row;
INSERT INTO ocx.removals (stream_id, first_version, last_version, events, last_hash, kind)
SELECT 'tele-1', 1, 2, 2, hash, 'retention' FROM ocx.events WHERE stream_id = 'tele-1' AND stream_version = 2;
DELETE FROM ocx.events WHERE stream_id = 'tele-1' AND stream_version <= 2;
ALTER TABLE ocx.events ENABLE ALWAYS TRIGGER events_immutable_row;
});
is(sql(q{SELECT version || ' ' || problem || ' ' || authorised FROM ocx.verify('tele-1')}),
   '1 versions 1..2 removed (retention) true',
   'a recorded removal is reported as authorised, and the first kept event chains from its recorded head');
sql(q{
INSERT INTO ocx.removals (stream_id, first_version, last_version, events, last_hash, kind)
VALUES ('tele-2', 1, 1, 1, '\x00', 'hard_delete');
SELECT ocx.append('tele-2', 0, '[{"type": "T", "data": {"n": 1}}, {"type": "T", "data": {"n": 2}}]');
ALTER TABLE ocx.events DISABLE TRIGGER events_immutable_row;
DELETE FROM ocx.events WHERE stream_id = 'tele-2' AND stream_version = 1;
ALTER TABLE ocx.events ENABLE ALWAYS TRIGGER events_immutable_row;
});
is(sql(q{SELECT string_agg(version || ' ' || authorised, ', ' ORDER BY version) FROM ocx.verify('tele-2')}),
   '1 true, 2 false', 'a removal record whose head does not match: the kept event is reported');
my ($rc, $out, $err) = $node->psql('postgres', q{UPDATE ocx.removals SET kind = 'retention'});
like($err, qr/append-only/, 'removals are append-only');

# the worker seals on its own, in log order
sql(q{ALTER SYSTEM SET ocx.seal_interval = '100ms'; SELECT pg_reload_conf();});
sql(q{SELECT ocx.append('acct-9', NULL, '{"type": "Late", "data": {}}')});
my $last = sql(q{SELECT ocx.cursor(txid, global_position) FROM ocx.events WHERE stream_id = 'acct-9'});
ok($node->poll_query_until('postgres',
   qq{SELECT EXISTS (SELECT FROM ocx.seals WHERE last_cursor OPERATOR(ocx.>=) '$last'::ocx.cursor)}),
   'the worker sealed the new event');
is(sql(q{SELECT count(*) FROM ocx.seals s JOIN LATERAL (SELECT ocx.verify_seal(s.seal_id)) v(ok) ON NOT v.ok}),
   '0', 'every seal verifies');

# a key file others can read is refused
chmod 0644, "$dir/seal.pem";
sql(q{SELECT ocx.append('acct-9', NULL, '{"type": "Later", "data": {}}')});
($rc, $out, $err) = $node->psql('postgres', q{SELECT ocx.seal()});
like($err, qr/readable by others/, 'a signing key file readable by others is refused');
chmod 0600, "$dir/seal.pem";

# several seals in one statement (a cluster of its own, no worker sealing,
# at most 2 events a seal): each starts where the one before stopped, so
# three calls over 4 events make two seals and then nothing; no range twice
my $multi = PostgreSQL::Test::Cluster->new('integrity_multi');
$multi->init;
$multi->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'ocx'
ocx.seal_interval = 0
ocx.seal_max_events = 2
});
$multi->start;
$multi->safe_psql('postgres', q{CREATE EXTENSION ocx;
SELECT ocx.append('batch-1', 0, '[{"type": "B", "data": {}}, {"type": "B", "data": {}},
                                  {"type": "B", "data": {}}, {"type": "B", "data": {}}]')});
is($multi->safe_psql('postgres', q{SELECT count(s) FROM (SELECT ocx.seal() s FROM generate_series(1, 3)) x}), '2',
   'three ocx.seal() calls in one statement make two seals of the four events');
is($multi->safe_psql('postgres', q{SELECT string_agg(events::text, ',' ORDER BY seal_id) FROM ocx.seals}), '2,2',
   'each seal holds two events');
is($multi->safe_psql('postgres', q{SELECT count(*) FROM ocx.verify()}), '0',
   'the log and its seals verify (no seal overlaps another)');
$multi->stop;

$node->stop;
done_testing();
