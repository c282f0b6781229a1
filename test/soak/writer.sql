-- a writer: 1-3 appends to a random account, 1 in 1000 a Poison event, 10% rolled back
\set s random(1, 1000)
\set a random(1, 100)
\set w random(0, 3)
\set p random(1, 1000)
\set r random(1, 10)
BEGIN;
SELECT ocx.append_event('acct-' || :s, NULL, CASE WHEN :w = 0 THEN 'Withdrawn' ELSE 'Deposited' END, jsonb_build_object('amount', :a));
\if :w = 1
SELECT ocx.append('acct-' || :s, NULL, jsonb_build_array(jsonb_build_object('type', 'Deposited', 'data', jsonb_build_object('amount', :a)), jsonb_build_object('type', 'Withdrawn', 'data', jsonb_build_object('amount', 1))));
\endif
\if :p = 1
SELECT ocx.append_event('acct-poison', NULL, 'Poison', '{}');
\endif
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
