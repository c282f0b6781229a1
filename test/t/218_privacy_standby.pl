# Personal data on a hot standby (docs/privacy.md): the standby reveals the
# personal fields to the same roles as the primary (a member of
# ocx_personal_data in clear, a plain reader null), and an erasure on the
# primary (ocx.forget_subject) reaches it: once the forget has been replayed,
# the subject's fields read as erased there too, also in a standby session
# that had revealed them (and cached the subject's data key) before.  The
# standby holds the same key-encryption key file as the primary, as a
# physical copy must.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OcxPrivacy;

my $primary = privacy_node('privacy_primary', allows_streaming => 1);
$primary->safe_psql('postgres', q{
CREATE EXTENSION ocx;
SELECT ocx.define_personal_data('CustomerRegistered', 'customer_id', '{email,name}');
CREATE ROLE clerk LOGIN;
GRANT ocx_reader TO clerk;
CREATE ROLE dpo LOGIN;
GRANT ocx_reader, ocx_personal_data TO dpo;
SELECT ocx.append('customer-' || c, NULL, jsonb_build_object('type', 'CustomerRegistered',
           'data', jsonb_build_object('customer_id', c, 'email', c || '@example.org',
                                      'name', 'Name of ' || c, 'city', 'Openville')))
  FROM unnest(ARRAY['c1', 'c2', 'c3']) c;
});
$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('privacy_standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

my $read = q{SELECT string_agg(format('%s %s %s %s', data->>'customer_id', coalesce(data->>'email', '-'),
                                      data->>'city', coalesce(metadata->>'erased', 'no')), '; ' ORDER BY stream_id)
               FROM ocx.read_all(NULL, NULL, '{CustomerRegistered}')};
is($standby->safe_psql('postgres', "SET SESSION AUTHORIZATION dpo; $read"),
	'c1 c1@example.org Openville no; c2 c2@example.org Openville no; c3 c3@example.org Openville no',
	'the standby reveals the personal fields to a member of ocx_personal_data');
is($standby->safe_psql('postgres', "SET SESSION AUTHORIZATION clerk; $read"),
	'c1 - Openville no; c2 - Openville no; c3 - Openville no',
	'and shows them as null to a plain reader, the rest in clear');
is($standby->safe_psql('postgres', "SET SESSION AUTHORIZATION dpo; $read"),
	$primary->safe_psql('postgres', "SET SESSION AUTHORIZATION dpo; $read"),
	'as the primary does');

# a standby session that has revealed c2 (its data key cached), then the
# erasure on the primary
my $s = $standby->background_psql('postgres');
$s->query_safe('SET SESSION AUTHORIZATION dpo');
like($s->query_safe($read), qr/c2 c2\@example\.org/, 'a standby session reveals c2');
is($primary->safe_psql('postgres', q{SELECT ocx.forget_subject('c2')}), 't', 'the primary forgets c2');
$primary->wait_for_catchup($standby, 'replay');
is($s->query_safe($read), 'c1 c1@example.org Openville no; c2 - Openville true; c3 c3@example.org Openville no',
	'once replayed, that standby session reads c2 as erased (its cached key is gone), the others unchanged');
is($standby->safe_psql('postgres', "SET SESSION AUTHORIZATION dpo; $read"),
	'c1 c1@example.org Openville no; c2 - Openville true; c3 c3@example.org Openville no',
	'and so does a new session on the standby');
$s->quit;

# on the standby nothing personal can be written or erased
my ($rc, $out, $err) = $standby->psql('postgres', "\\set VERBOSITY verbose\nSELECT ocx.forget_subject('c1')");
like($err, qr/ERROR:  25006/, 'forget_subject on the standby is refused with 25006');

$standby->stop;
$primary->stop;
done_testing();
