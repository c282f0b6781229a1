-- examples/banking.sql: the banking domain as an ocx module.
--
--   transfer = debit the source -> credit the destination
--
-- Accounts are event-sourced aggregates (stream bank_account-<id>): the
-- state is rebuilt by ocx.load with bank.apply, and a debit that would
-- overdraw the account is refused by the aggregate (DebitRefused).
-- A transfer is a saga; when the credit fails (the destination is closed or
-- missing), the saga compensates by refunding the source.
--
-- Module contents (schema "bank"):
--   module "bank"   event types with contracts: AccountOpened, Deposited,
--                   AccountClosed, Debited, DebitRefused, Credited,
--                   CreditRefused, Refunded; aggregate bank_account
--                   (apply function bank.apply, snapshots every 100 events)
--   commands        bank.Debit, bank.Credit, bank.Refund (plpgsql handlers
--                   run by the ocx worker; appends use the aggregate's
--                   version as expected version: a concurrent write is a
--                   conflict, and the command is retried)
--   projection      bank.balances, balances as a read model
--   saga            transfer
--   entry points    bank.open_account, bank.close_account, bank.transfer
\set ON_ERROR_STOP 1

CREATE SCHEMA bank;

-- -------------------------------------------------------------- aggregate

CREATE FUNCTION bank.apply(state jsonb, e ocx.event) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE e.type
        WHEN 'AccountOpened' THEN state || jsonb_build_object('owner', e.data->'owner', 'open', true, 'balance', 0)
        WHEN 'Deposited' THEN state || jsonb_build_object('balance', (state->>'balance')::numeric + (e.data->>'amount')::numeric)
        WHEN 'Credited' THEN state || jsonb_build_object('balance', (state->>'balance')::numeric + (e.data->>'amount')::numeric)
        WHEN 'Refunded' THEN state || jsonb_build_object('balance', (state->>'balance')::numeric + (e.data->>'amount')::numeric)
        WHEN 'Debited' THEN state || jsonb_build_object('balance', (state->>'balance')::numeric - (e.data->>'amount')::numeric)
        WHEN 'AccountClosed' THEN state || jsonb_build_object('open', false)
        ELSE state END $$;

-- The module: event contracts and the aggregate.  A debit or credit without a
-- positive amount is refused by its contract before it reaches the log.
SELECT ocx.define_module('bank', $json${
  "description": "accounts and transfers",
  "event_types": [
    {"type": "AccountOpened", "schema_version": 1,
     "schema": {"type": "object", "required": ["owner"], "properties": {"owner": {"type": "string", "minLength": 1}}}},
    {"type": "Deposited", "schema_version": 1,
     "schema": {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number", "minimum": 0.01}}}},
    {"type": "Debited", "schema_version": 1,
     "schema": {"type": "object", "required": ["account", "amount", "transfer_id"],
                "properties": {"amount": {"type": "number", "minimum": 0.01}}}},
    {"type": "Credited", "schema_version": 1,
     "schema": {"type": "object", "required": ["account", "amount", "transfer_id"],
                "properties": {"amount": {"type": "number", "minimum": 0.01}}}},
    {"type": "Refunded", "schema_version": 1,
     "schema": {"type": "object", "required": ["account", "amount", "transfer_id"],
                "properties": {"amount": {"type": "number", "minimum": 0.01}}}},
    {"type": "DebitRefused", "schema_version": 1},
    {"type": "CreditRefused", "schema_version": 1},
    {"type": "AccountClosed", "schema_version": 1}
  ],
  "aggregates": [
    {"aggregate_type": "bank_account", "apply": "bank.apply(jsonb,ocx.event)",
     "initial_state": {"open": false, "balance": 0}, "snapshot_every": 100}
  ]}$json$);

-- The account's state and version (ocx.load: the newest snapshot, then the
-- rest of the stream replayed in C); a missing account is closed and empty.
CREATE FUNCTION bank.load(account text, OUT state jsonb, OUT version bigint) LANGUAGE plpgsql AS $$
BEGIN
    IF ocx.stream_version('bank_account-' || account) = 0 THEN
        state := '{"open": false, "balance": 0}';
        version := 0;
        RETURN;
    END IF;
    SELECT l.state, l.version INTO state, version FROM ocx.load('bank_account', 'bank_account-' || account) l;
END $$;

-- --------------------------------------------------------------- handlers

CREATE FUNCTION bank.debit(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a record := bank.load(c.data->>'account');
    amount numeric := (c.data->>'amount')::numeric;
BEGIN
    IF NOT (a.state->>'open')::boolean OR (a.state->>'balance')::numeric < amount THEN
        -- the aggregate refuses an overdraft (or a closed account)
        PERFORM ocx.append_event('bank_account-' || (c.data->>'account'), a.version, 'DebitRefused',
            c.data || jsonb_build_object('balance', a.state->'balance',
                                         'reason', CASE WHEN (a.state->>'open')::boolean
                                                        THEN 'insufficient funds' ELSE 'account closed' END));
    ELSE
        PERFORM ocx.append_event('bank_account-' || (c.data->>'account'), a.version, 'Debited', c.data);
    END IF;
    RETURN jsonb_build_object('version', a.version + 1);
END $$;

CREATE FUNCTION bank.credit(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a record := bank.load(c.data->>'account');
BEGIN
    IF NOT (a.state->>'open')::boolean THEN
        -- record the refusal on the transfer's stream: the account may not exist
        PERFORM ocx.append_event('bank_transfer-' || (c.data->>'transfer_id'), NULL, 'CreditRefused',
            c.data || jsonb_build_object('reason', CASE WHEN a.version = 0 THEN 'no such account'
                                                        ELSE 'account closed' END));
    ELSE
        PERFORM ocx.append_event('bank_account-' || (c.data->>'account'), a.version, 'Credited', c.data);
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION bank.refund(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    a record := bank.load(c.data->>'account');
BEGIN
    PERFORM ocx.append_event('bank_account-' || (c.data->>'account'), a.version, 'Refunded', c.data);
    RETURN NULL;
END $$;

SELECT ocx.define_command_handler('bank.Debit', 'bank.debit(ocx.command)',
                                  '{"max_attempts": 5, "base_delay": "100 milliseconds"}');
SELECT ocx.define_command_handler('bank.Credit', 'bank.credit(ocx.command)',
                                  '{"max_attempts": 5, "base_delay": "100 milliseconds"}');
SELECT ocx.define_command_handler('bank.Refund', 'bank.refund(ocx.command)',
                                  '{"max_attempts": 10, "base_delay": "100 milliseconds"}');

-- ------------------------------------------------------------- projection

CREATE TABLE bank.balances (
    account     text PRIMARY KEY,
    owner       text,
    balance     numeric NOT NULL DEFAULT 0,
    open        boolean NOT NULL DEFAULT true,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE FUNCTION bank.project(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    acct text := substr(e.stream_id, length('bank_account-') + 1);
    delta numeric := CASE WHEN e.type IN ('Deposited', 'Credited', 'Refunded') THEN (e.data->>'amount')::numeric
                          WHEN e.type = 'Debited' THEN -(e.data->>'amount')::numeric
                          ELSE 0 END;
BEGIN
    IF e.type = 'AccountOpened' THEN
        INSERT INTO bank.balances (account, owner, version, updated_at)
            VALUES (acct, e.data->>'owner', e.stream_version, e.time);
    ELSE
        UPDATE bank.balances SET balance = balance + delta, version = e.stream_version, updated_at = e.time,
               open = open AND e.type <> 'AccountClosed'
         WHERE account = acct;
    END IF;
END $$;

SELECT ocx.define_projection('bank.balances', 'bank.project(ocx.event)', categories => '{bank_account}');

-- ------------------------------------------------------------------- saga

SELECT ocx.define_saga('transfer', $json${
  "description": "move money between two accounts; a failed credit refunds the source",
  "steps": [
    {"name": "debit", "command": "bank.Debit",
     "data": {"account": "$.input.from", "amount": "$.input.amount", "transfer_id": "$.input.transfer_id"},
     "success": "Debited", "failure": "DebitRefused", "timeout": "30 seconds",
     "compensation": {"command": "bank.Refund",
                      "data": {"account": "$.input.from", "amount": "$.input.amount",
                               "transfer_id": "$.input.transfer_id", "reason": "refund"}}},
    {"name": "credit", "command": "bank.Credit",
     "data": {"account": "$.input.to", "amount": "$.input.amount", "transfer_id": "$.input.transfer_id"},
     "success": "Credited", "failure": "CreditRefused", "timeout": "30 seconds"}
  ]}$json$);

-- -------------------------------------------------------------- entry points

CREATE FUNCTION bank.open_account(account text, owner text, deposit numeric DEFAULT 0) RETURNS bigint
    LANGUAGE sql AS $$
    SELECT ocx.append('bank_account-' || account, 0,
        jsonb_build_array(jsonb_build_object('type', 'AccountOpened', 'data', jsonb_build_object('owner', owner)))
        || CASE WHEN deposit > 0 THEN jsonb_build_array(jsonb_build_object('type', 'Deposited',
                                          'data', jsonb_build_object('amount', deposit)))
                ELSE '[]'::jsonb END) $$;

CREATE FUNCTION bank.close_account(account text) RETURNS bigint LANGUAGE sql AS $$
    SELECT ocx.append_event('bank_account-' || account, (bank.load(account)).version, 'AccountClosed', '{}') $$;

-- A transfer's id names its saga (and makes a retried request a no-op).
CREATE FUNCTION bank.transfer(transfer_id text, from_account text, to_account text, amount numeric)
    RETURNS uuid LANGUAGE sql AS $$
    SELECT ocx.start_saga('transfer',
        jsonb_build_object('transfer_id', transfer_id, 'from', from_account, 'to', to_account, 'amount', amount),
        md5('transfer/' || transfer_id)::uuid) $$;
