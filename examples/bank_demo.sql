-- The ocx tour, part 1: accounts as event streams.
\pset footer off
\echo '== 1. Open two accounts and deposit money (append with expected versions)'
SELECT ocx.append('account-alice', 0, '[
    {"type": "AccountOpened", "data": {"owner": "Alice"}},
    {"type": "Deposited", "data": {"amount": 100}}]') AS alice_version;
SELECT ocx.append('account-bob', 0, '{"type": "AccountOpened", "data": {"owner": "Bob"}}') AS bob_version;
SELECT ocx.append_event('account-bob', 1, 'Deposited', '{"amount": 50}') AS bob_version;
