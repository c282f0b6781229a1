-- docs/migrating.md: the mappings from Message DB, Marten and an EventStoreDB
-- JSON export into ocx.import_staging, run on source tables built as their
-- public documentation describes them.  In a database of its own.
\set SHOW_CONTEXT never
SELECT current_database() AS regress_db \gset
CREATE DATABASE ocx_migrating_regress;
\c ocx_migrating_regress
SET client_min_messages = warning;
CREATE EXTENSION ocx;
RESET client_min_messages;
\set SHOW_CONTEXT never

-- Message DB: message_store.messages (position counts from 0; time is UTC
-- without a zone; metadata may be NULL)
CREATE SCHEMA message_store;
CREATE TABLE message_store.messages (
    global_position bigserial NOT NULL,
    position bigint NOT NULL,
    time timestamp without time zone DEFAULT (now() AT TIME ZONE 'utc') NOT NULL,
    stream_name text NOT NULL,
    type text NOT NULL,
    data jsonb,
    metadata jsonb,
    id uuid NOT NULL
);
INSERT INTO message_store.messages (position, time, stream_name, type, data, metadata, id) VALUES
    (0, '2021-03-01 10:00:00', 'account-123', 'Opened', '{"customerId": "c1"}', NULL, '6f1b4b2e-0000-4000-8000-000000000001'),
    (0, '2021-03-01 10:00:01', 'account:command-123', 'Deposit', '{"amount": 10}',
        '{"correlationStreamName": "web-1"}', '6f1b4b2e-0000-4000-8000-000000000002'),
    (1, '2021-03-01 10:00:02', 'account-123', 'Deposited', '{"amount": 10}',
        '{"causationMessageStreamName": "account:command-123", "causationMessagePosition": 0}',
        '6f1b4b2e-0000-4000-8000-000000000003');

BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data, metadata, event_id, source, "time")
SELECT m.stream_name, m.position + 1, m.type, COALESCE(m.data, '{}'), COALESCE(m.metadata, '{}'),
       m.id, 'message-db', (m.time AT TIME ZONE 'utc')::text
  FROM message_store.messages m
 ORDER BY m.global_position;
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT stream_id, stream_version, type, data, metadata, event_id, time AT TIME ZONE 'utc' AS utc
  FROM ocx.events ORDER BY txid, global_position;
SELECT stream_id, category, version FROM ocx.streams ORDER BY stream_id;

-- Marten: mt_events (version counts from 1; stream ids are uuids, the
-- aggregate type is in mt_streams; type is Marten's alias, mt_dotnet_type the
-- .NET type; optional correlation_id, causation_id and headers columns)
CREATE SCHEMA marten;
CREATE TABLE marten.mt_streams (
    id uuid PRIMARY KEY,
    type varchar,
    version bigint,
    timestamp timestamptz NOT NULL DEFAULT now(),
    snapshot jsonb,
    snapshot_version integer,
    created timestamptz NOT NULL DEFAULT now(),
    tenant_id varchar DEFAULT '*DEFAULT*',
    is_archived bool DEFAULT false
);
CREATE TABLE marten.mt_events (
    seq_id bigint PRIMARY KEY,
    id uuid NOT NULL,
    stream_id uuid REFERENCES marten.mt_streams ON DELETE CASCADE,
    version bigint NOT NULL,
    data jsonb NOT NULL,
    type varchar(500) NOT NULL,
    timestamp timestamptz NOT NULL DEFAULT now(),
    tenant_id varchar DEFAULT '*DEFAULT*',
    mt_dotnet_type varchar,
    correlation_id varchar,
    causation_id varchar,
    headers jsonb,
    is_archived bool DEFAULT false,
    UNIQUE (stream_id, version)
);
INSERT INTO marten.mt_streams (id, type, version) VALUES
    ('9a0e0000-0000-4000-8000-00000000000a', 'Trip', 2),
    ('9a0e0000-0000-4000-8000-00000000000b', 'Trip', 1);
INSERT INTO marten.mt_events (seq_id, id, stream_id, version, data, type, timestamp, mt_dotnet_type,
                              correlation_id, causation_id, headers) VALUES
    (1, '7c000000-0000-4000-8000-000000000001', '9a0e0000-0000-4000-8000-00000000000a', 1, '{"Day": 1}',
     'trip_started', '2022-05-01 08:00:00+00', 'Trips.TripStarted, Trips', '7c000000-0000-4000-8000-0000000000c1', NULL, '{"user": "ann"}'),
    (2, '7c000000-0000-4000-8000-000000000002', '9a0e0000-0000-4000-8000-00000000000b', 1, '{"Day": 2}',
     'trip_started', '2022-05-02 08:00:00+00', 'Trips.TripStarted, Trips', NULL, NULL, NULL),
    (3, '7c000000-0000-4000-8000-000000000003', '9a0e0000-0000-4000-8000-00000000000a', 2, '{"Day": 3}',
     'trip_ended', '2022-05-03 08:00:00+00', 'Trips.TripEnded, Trips', '7c000000-0000-4000-8000-0000000000c1',
     '7c000000-0000-4000-8000-000000000001', NULL);

BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data, metadata, event_id, source, "time",
                                correlation_id, causation_id)
SELECT lower(s.type) || '-' || e.stream_id, e.version, e.type, e.data,
       jsonb_strip_nulls(jsonb_build_object('headers', e.headers, 'dotnet_type', e.mt_dotnet_type)),
       e.id, 'marten', e.timestamp::text, e.correlation_id, e.causation_id
  FROM marten.mt_events e JOIN marten.mt_streams s ON s.id = e.stream_id
 WHERE NOT e.is_archived
 ORDER BY e.seq_id;
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT stream_id, stream_version, type, data, metadata, correlation_id, causation_id
  FROM ocx.events WHERE source = 'marten' ORDER BY txid, global_position;

-- EventStoreDB: a JSON export, one event per line as its HTTP API returns
-- them (eventStreamId, eventNumber from 0, eventType, eventId, data,
-- metaData, updated); read with COPY, a JSON document per row
CREATE TABLE esdb_export (doc jsonb);
COPY esdb_export FROM STDIN (FORMAT csv, QUOTE e'\x01', DELIMITER e'\x02');
{"eventStreamId": "game-1", "eventNumber": 0, "eventType": "GameCreated", "eventId": "e5000000-0000-4000-8000-000000000001", "data": {"creator": "player-1"}, "metaData": {"$correlationId": "e5000000-0000-4000-8000-0000000000c1"}, "updated": "2019-09-08T16:07:53.5242492Z"}
{"eventStreamId": "game-1", "eventNumber": 1, "eventType": "MoveMade", "eventId": "e5000000-0000-4000-8000-000000000002", "data": {"player": "player-1", "move": "rock"}, "metaData": {"$correlationId": "e5000000-0000-4000-8000-0000000000c1", "$causationId": "e5000000-0000-4000-8000-000000000001"}, "updated": "2019-09-08T16:07:54Z"}
{"eventStreamId": "game-2", "eventNumber": 0, "eventType": "GameCreated", "eventId": "e5000000-0000-4000-8000-000000000003", "data": {"creator": "player-2"}, "metaData": "", "updated": "2019-09-08T16:08:00Z"}
\.
BEGIN;
SELECT ocx.import_begin();
INSERT INTO ocx.import_staging (stream_id, stream_version, type, data, metadata, event_id, source, "time",
                                correlation_id, causation_id)
SELECT d.doc ->> 'eventStreamId', (d.doc ->> 'eventNumber')::bigint + 1, d.doc ->> 'eventType',
       d.doc -> 'data',
       CASE WHEN jsonb_typeof(d.doc -> 'metaData') = 'object' THEN d.doc -> 'metaData' ELSE '{}' END,
       d.doc ->> 'eventId', 'eventstoredb', d.doc ->> 'updated',
       d.doc -> 'metaData' ->> '$correlationId', d.doc -> 'metaData' ->> '$causationId'
  FROM esdb_export d;
SELECT * FROM ocx.import_commit();
COMMIT;
SELECT stream_id, stream_version, type, data, correlation_id, causation_id, time
  FROM ocx.events WHERE source = 'eventstoredb' ORDER BY txid, global_position;

SELECT count(*) AS problems FROM ocx.verify();
\c :regress_db
DROP DATABASE ocx_migrating_regress WITH (FORCE);
