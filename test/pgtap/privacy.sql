-- Personal data (docs/privacy.md): errors and privileges, each checked as the
-- least privileged role that may (or may not) do it.  The test server has no
-- ocx.privacy_key_file: what needs the key is t/191_privacy.pl's.
BEGIN;
SELECT plan(24);

SELECT has_role('ocx_personal_data');
SELECT is_empty($$ SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = 'ocx_personal_data'
                      AND (rolcanlogin OR rolsuper OR rolbypassrls OR rolcreaterole) $$,
                'ocx_personal_data cannot log in and has no special attributes');

CREATE ROLE pd_reader;
CREATE ROLE pd_writer;
CREATE ROLE pd_admin;
GRANT ocx_reader TO pd_reader;
GRANT ocx_writer TO pd_writer;
GRANT ocx_admin TO pd_admin;

-- a reader: reads definitions, never keys or erasures, defines nothing
SET ROLE pd_reader;
SELECT lives_ok($$ SELECT count(*) FROM ocx.personal_data $$, 'a reader may read the definitions');
SELECT throws_ok($$ SELECT count(*) FROM ocx.subject_keys $$, '42501', NULL, 'a reader may not read the data keys');
SELECT throws_ok($$ SELECT count(*) FROM ocx.erasures $$, '42501', NULL, 'nor the erasures');
SELECT throws_ok($$ SELECT ocx.forget_subject('c1') $$, '42501', NULL, 'a reader may not forget a subject');
SELECT throws_ok($$ SELECT ocx._shred_subject_key('c1') $$, '42501', NULL, 'nor shred a key directly');
SELECT is(ocx._reveal('NoPersonalData', '{"a": 1}', gen_random_uuid()), '{"a": 1}'::jsonb,
          'a type without personal data reads as stored');
RESET ROLE;

-- a writer: appends, defines nothing, forgets nothing
SET ROLE pd_writer;
SELECT throws_ok($$ SELECT ocx.define_personal_data('pd.Customer', 'id', '{email}') $$, '42501', NULL,
                 'a writer may not define personal data');
SELECT throws_ok($$ SELECT ocx.forget_subject('c1') $$, '42501', NULL, 'nor forget a subject');
SELECT throws_ok($$ SELECT ocx.rotate_privacy_key('/nonexistent') $$, '42501', NULL, 'nor rotate the key');
RESET ROLE;

-- an admin: defines, drops, forgets; bad arguments are refused
SET ROLE pd_admin;
SELECT lives_ok($$ SELECT ocx.define_personal_data('pd.Customer', 'id', '{email,address.street}') $$,
                'an admin defines personal data');
SELECT lives_ok($$ SELECT ocx.define_personal_data('pd.Customer', 'customer.id', '{email,name}') $$,
                'and replaces the definition');
SELECT is((SELECT subject || ' ' || fields::text FROM ocx.personal_data WHERE type = 'pd.Customer'),
          'customer.id {email,name}', 'the definition is replaced');
SELECT throws_ok($$ SELECT ocx.define_personal_data('pd.Bad', 'id', '{a..b}') $$, 'OX621', NULL,
                 'an empty key in a path is refused');
SELECT throws_ok($$ SELECT ocx.define_personal_data('pd.Bad', 'id', '{id}') $$, 'OX621', NULL,
                 'a field that is the subject is refused');
SELECT throws_ok($$ SELECT ocx.define_personal_data('pd.Bad', 'id', '{a,a.b}') $$, 'OX621', NULL,
                 'overlapping fields are refused');
SELECT throws_ok($$ SELECT ocx.define_personal_data('pd.Bad', 'id', '{}') $$, 'OX621', NULL,
                 'no fields is refused');
SELECT throws_ok($$ SELECT ocx.define_personal_data('pd bad', 'id', '{a}') $$, 'OX500', NULL,
                 'the type follows the one name rule');
SELECT throws_ok($$ SELECT ocx.drop_personal_data('pd.Missing') $$, 'OX620', NULL,
                 'dropping an unknown definition raises OX620');
SELECT throws_ok($$ SELECT ocx.forget_subject('') $$, 'OX625', NULL, 'forget_subject needs a subject');
SELECT throws_ok($$ SELECT ocx.rotate_privacy_key('/nonexistent') $$, 'OX626', NULL,
                 'only a superuser rotates the key-encryption key');
SELECT throws_ok($$ SELECT ocx.append('pd-1', NULL, '{"type": "pd.Customer", "data": {"email": "x@example.com"}}') $$,
                 'OX623', NULL, 'an event without its subject is refused');
SELECT throws_ok($$ SELECT ocx.append('pd-1', NULL, '{"type": "pd.Customer", "data": {"customer": {"id": "c1"}, "email": "x@example.com"}}') $$,
                 'OX622', NULL, 'without ocx.privacy_key_file nothing is stored encrypted, nor in clear');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
