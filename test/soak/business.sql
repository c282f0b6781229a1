-- sagas and commands: a saga, a server-handled deposit, a client-handled notification; 10% rolled back
\set s random(1, 1000)
\set a random(1, 100)
\set n random(1, 1000000000)
\set r random(1, 10)
BEGIN;
SELECT ocx.start_saga('soak_order', jsonb_build_object('n', :n, 'amount', :a));
SELECT ocx.send_command('soak.Deposit', jsonb_build_object('stream', 'acct-' || :s, 'amount', :a));
SELECT ocx.send_command('soak.Notify', jsonb_build_object('n', :n));
\if :r = 1
ROLLBACK;
\else
COMMIT;
\endif
