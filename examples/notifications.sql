-- examples/notifications.sql: the notifications domain as an ocx module.
--
-- A flaky handler retried with backoff, then dead-lettered.  Sending a
-- notification is a command whose handler fails for its first attempts on
-- a flaky channel (as a real SMS gateway would), and always on a broken
-- one: the command queue retries it with exponential backoff and, after
-- max_attempts, parks it as a dead letter (ocx.command_status shows each
-- attempt; ocx.retry_command sends it again).
--
-- Module contents (schema "notify"):
--   module "notify" event types with contracts: NotificationSent,
--                   NotificationRetracted
--   plain table     notify.channels: how many attempts each channel fails
--   commands        notify.Send (flaky), notify.Retract (plpgsql handlers)
--   projection      notify.outbox: what was sent, per recipient
--   saga            welcome: an e-mail, then an SMS; when the SMS cannot be
--                   sent (dead letter) the e-mail is retracted
--   entry point     notify.welcome(user_id, email, phone)
\set ON_ERROR_STOP 1

CREATE SCHEMA notify;

SELECT ocx.define_module('notify', $json${
  "description": "notifications",
  "event_types": [
    {"type": "NotificationSent", "schema_version": 1,
     "schema": {"type": "object", "required": ["user_id", "channel", "attempt"],
                "properties": {"channel": {"type": "string", "enum": ["email", "sms", "pager"]},
                               "attempt": {"type": "integer", "minimum": 1}}}},
    {"type": "NotificationRetracted", "schema_version": 1,
     "schema": {"type": "object", "required": ["user_id", "channel"]}}
  ]}$json$);

-- fail_first: attempts that fail before one succeeds; NULL: always fails
CREATE TABLE notify.channels (
    channel     text PRIMARY KEY,
    fail_first  integer
);
INSERT INTO notify.channels VALUES ('email', 0), ('sms', 2), ('pager', NULL);

CREATE FUNCTION notify.send(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    ch notify.channels;
BEGIN
    SELECT * INTO ch FROM notify.channels WHERE channel = c.data->>'channel';
    IF NOT FOUND OR ch.fail_first IS NULL OR c.attempt <= ch.fail_first THEN
        RAISE EXCEPTION 'gateway for % unavailable (attempt %)', c.data->>'channel', c.attempt;
    END IF;
    PERFORM ocx.append_event('notification-' || (c.data->>'user_id'), NULL, 'NotificationSent',
                             c.data || jsonb_build_object('attempt', c.attempt));
    RETURN jsonb_build_object('attempts', c.attempt);
END $$;

CREATE FUNCTION notify.retract(c ocx.command) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ocx.append_event('notification-' || (c.data->>'user_id'), NULL, 'NotificationRetracted', c.data);
    RETURN NULL;
END $$;

-- retried after 0.2 s, 0.4 s, ...; the fourth failure is a dead letter
SELECT ocx.define_command_handler('notify.Send', 'notify.send(ocx.command)',
    '{"max_attempts": 4, "base_delay": "200 milliseconds", "max_delay": "2 seconds"}');
SELECT ocx.define_command_handler('notify.Retract', 'notify.retract(ocx.command)');

CREATE TABLE notify.outbox (
    user_id     text NOT NULL,
    channel     text NOT NULL,
    address     text,
    attempt     integer,
    retracted   boolean NOT NULL DEFAULT false,
    sent_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, channel)
);

CREATE FUNCTION notify.project(e ocx.event) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.type = 'NotificationSent' THEN
        INSERT INTO notify.outbox VALUES (e.data->>'user_id', e.data->>'channel', e.data->>'address',
                                          (e.data->>'attempt')::int, false, e.time)
            ON CONFLICT (user_id, channel) DO NOTHING;
    ELSIF e.type = 'NotificationRetracted' THEN
        UPDATE notify.outbox SET retracted = true
         WHERE user_id = e.data->>'user_id' AND channel = e.data->>'channel';
    END IF;
END $$;

SELECT ocx.define_projection('notify.outbox', 'notify.project(ocx.event)', categories => '{notification}');

SELECT ocx.define_saga('welcome', $json${
  "description": "welcome a new user by e-mail, then by SMS (or pager)",
  "steps": [
    {"name": "email", "command": "notify.Send",
     "data": {"user_id": "$.input.user_id", "channel": "email", "address": "$.input.email"},
     "success": "NotificationSent",
     "compensation": {"command": "notify.Retract",
                      "data": {"user_id": "$.input.user_id", "channel": "email"}}},
    {"name": "sms", "command": "notify.Send",
     "data": {"user_id": "$.input.user_id", "channel": "$.input.second_channel", "address": "$.input.phone"},
     "success": "NotificationSent", "timeout": "1 minute"}
  ]}$json$);

CREATE FUNCTION notify.welcome(user_id text, email text, phone text, second_channel text DEFAULT 'sms')
    RETURNS uuid LANGUAGE sql AS $$
    SELECT ocx.start_saga('welcome',
        jsonb_build_object('user_id', user_id, 'email', email, 'phone', phone, 'second_channel', second_channel),
        md5('welcome/' || user_id)::uuid) $$;
