# The encrypted fields' markers (docs/privacy.md, "What is stored"): every
# value reads back exactly as appended, whatever its JSON shape and length
# (the ciphertext's base64 ending in "==", "=" and no padding are all
# seen), and a marker that was altered in any of its parts, or moved to
# another event, path or subject, does not read: OX624, while the events
# around it still do.  A session that read a subject's fields (and keeps
# its data key as the last one looked up) reads them as erased once another
# session forgot the subject.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxPrivacy;

my $node = privacy_node('privacy_markers');
$node->safe_psql('postgres', q{
CREATE EXTENSION ocx;
SELECT ocx.define_personal_data('pd.Profile', 'id', '{v,w}');
-- the values appended: every JSON shape, strings of every length 0..60
-- (some beyond the BMP), a long one, escapes
CREATE TABLE expected (n int PRIMARY KEY, v jsonb);
INSERT INTO expected
SELECT n, CASE
    WHEN n <= 60 THEN to_jsonb(repeat(CASE WHEN n % 3 = 0 THEN 'é' WHEN n % 3 = 1 THEN 'x' ELSE '😀' END, n))
    WHEN n = 61 THEN '0'
    WHEN n = 62 THEN '-1.5e300'
    WHEN n = 63 THEN '123456789012345678901234567890.000000000000000000001'
    WHEN n = 64 THEN 'true'
    WHEN n = 65 THEN 'false'
    WHEN n = 66 THEN '{"street": "Main \"Street\" 1", "nested": {"deep": [1, {"a": null}]}}'
    WHEN n = 67 THEN '[1, "two", [3], {"four": 4}]'
    WHEN n = 68 THEN to_jsonb(repeat('long text ', 500))
    WHEN n = 69 THEN to_jsonb(E'tab\there\nnewline \\ backslash \u0001 control'::text)
    WHEN n = 70 THEN '""'
    ELSE to_jsonb('value ' || n) END
  FROM generate_series(0, 79) n;
SELECT ocx.append('profile-' || (n % 8), NULL,
                  jsonb_build_object('type', 'pd.Profile',
                                     'data', jsonb_build_object('id', 's' || (n % 5), 'v', v, 'w', 'w' || n, 'n', n)))
  FROM expected ORDER BY n;
-- every event read: 'ok', or the SQLSTATE and message of the first error
CREATE FUNCTION try_read(stream text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM max(e.data::text) FROM ocx.read_stream(stream) e;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END $$;
-- put a string at a path of a stored event (the immutability trigger off)
CREATE FUNCTION tamper(stream text, version bigint, path text[], val text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    ALTER TABLE ocx.events DISABLE TRIGGER events_immutable_row;
    UPDATE ocx.events SET data = jsonb_set(data, path, to_jsonb(val))
     WHERE stream_id = stream AND stream_version = version;
    ALTER TABLE ocx.events ENABLE TRIGGER events_immutable_row;
END $$;
});

is($node->safe_psql('postgres', q{
SELECT count(*) FROM ocx.events
 WHERE type = 'pd.Profile' AND data->>'v' LIKE 'ocx:pd1:%' AND data->>'w' LIKE 'ocx:pd1:%'}), '80',
	'every value is stored as a marker');
is($node->safe_psql('postgres', q{
SELECT string_agg(DISTINCT CASE WHEN data->>'v' LIKE '%==' THEN '==' WHEN data->>'v' LIKE '%=' THEN '=' ELSE 'none' END, ',')
  FROM ocx.events WHERE type = 'pd.Profile'}), '=,==,none',
	'the markers end in every base64 padding');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM expected x
  JOIN (SELECT e.data FROM generate_series(0, 7) s, ocx.read_stream('profile-' || s) e) r
    ON (r.data->>'n')::int = x.n
 WHERE r.data->'v' = x.v AND r.data->>'w' = 'w' || x.n AND r.data->>'id' = 's' || (x.n % 5)}), '80',
	'every value reads back exactly as appended');

# the stored markers of profile-1 (versions 1..10 are n = 1, 9, 17, ...: the
# subjects s1, s4, s2, s0, s3, s1, s4, s2, s0, s3)
my %m = map { my ($ver, $v, $w) = split /\|/; ($ver => { v => $v, w => $w }) }
	split /\n/, $node->safe_psql('postgres', q{
SELECT stream_version, data->>'v', data->>'w' FROM ocx.events WHERE stream_id = 'profile-1' ORDER BY stream_version});
my $orig = $m{2}{v};
my ($prefix, $keyid, $b64) = $orig =~ /^(ocx:pd1:)([0-9a-f-]{36}):(.+)$/
	or die "unexpected marker $orig";
# a marker of another subject (profile-1 version 3 is n = 17, subject s2)
my ($other_key) = $m{3}{v} =~ /^ocx:pd1:([0-9a-f-]{36}):/;
isnt($other_key, $keyid, 'two subjects, two data keys');

sub flip { my ($s, $i) = @_; my $c = substr($s, $i, 1); substr($s, $i, 1) = ($c eq 'A' ? 'B' : 'A'); return $s; }
(my $bad_hex = $keyid) =~ s/^./g/;
(my $no_dash = $keyid) =~ s/-/0/;
my $short_b64 = substr($b64, 0, 8);
my $unpadded = $b64 =~ /=$/ ? substr($b64, 0, -1) : substr($b64, 0, -2);
my %cases = (
	'a ciphertext byte changed'            => "$prefix$keyid:" . flip($b64, 20),
	'the tag changed'                      => "$prefix$keyid:" . flip($b64, length($b64) - 4),
	'the nonce changed'                    => "$prefix$keyid:" . flip($b64, 1),
	'the marker of another event of the subject' => $m{7}{v},
	'the marker of another path'           => $m{2}{w},
	'the key id of another subject'        => "$prefix$other_key:$b64",
	'a key id with a non-hex digit'        => "$prefix$bad_hex:$b64",
	'a key id without its dashes'          => "$prefix$no_dash:$b64",
	'padding inside the base64'            => "$prefix$keyid:" . substr($b64, 0, 8) . '====' . substr($b64, 12),
	'a character outside base64'           => "$prefix$keyid:" . substr($b64, 0, 9) . '*' . substr($b64, 10),
	'a base64 length not a multiple of 4'  => "$prefix$keyid:$unpadded",
	'a ciphertext shorter than nonce+tag'  => "$prefix$keyid:$short_b64",
);
for my $case (sort keys %cases)
{
	$node->safe_psql('postgres', "SELECT tamper('profile-1', 2, '{v}', '$cases{$case}')");
	like($node->safe_psql('postgres', q{SELECT try_read('profile-1')}),
		qr/^OX624 personal data at "v" does not decrypt/, "$case: OX624");
	is($node->safe_psql('postgres', q{SELECT try_read('profile-2')}), 'ok', "$case: the other streams still read");
}
$node->safe_psql('postgres', "SELECT tamper('profile-1', 2, '{v}', '$orig')");
is($node->safe_psql('postgres', q{SELECT data->'v' = (SELECT v FROM expected WHERE n = 9) FROM ocx.read_stream('profile-1') WHERE stream_version = 2}),
	't', 'the marker put back reads again');

# one session reveals s1's fields (its data key the last one looked up),
# another forgets s1: the first session's next read has them erased
my $reader = $node->background_psql('postgres');
is($reader->query_safe(q{
SELECT string_agg(ocx._reveal(type, data, event_id)->>'w', ',' ORDER BY stream_version)
  FROM ocx.events WHERE stream_id = 'profile-1' AND data->>'id' = 's1'}),
	'w1,w41', "a session reads subject s1's fields");
is($node->safe_psql('postgres', q{SELECT ocx.forget_subject('s1')}), 't', 'another session forgets s1');
is($reader->query_safe(q{
SELECT string_agg(coalesce(data->>'w', 'null') || ' ' || (metadata->>'erased'), ',' ORDER BY stream_version)
  FROM ocx.read_stream('profile-1') WHERE data->>'id' = 's1'}),
	'null true,null true', "the first session's next read has s1's fields erased");
is($reader->query_safe(q{SELECT count(*) FROM ocx.read_stream('profile-1') WHERE data->>'id' <> 's1' AND data->>'w' LIKE 'w%'}),
	'8', "and the other subjects' fields in clear");
$reader->quit;

$node->stop;
done_testing();
