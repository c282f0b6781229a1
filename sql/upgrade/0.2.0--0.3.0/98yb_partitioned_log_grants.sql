-- ---------------------------------------------------------------------------
-- Who reaches the partitions and the archive (docs/scaling.md, "A
-- partitioned log"; after 90_security.sql, which creates the roles and only
-- covers schema ocx).  ocx_owner owns them and moves partitions between the
-- schemas (ocx.archive runs with its rights); readers read the archive
-- through ocx_archive.events (with include_archived => true), under its
-- tenancy policy; nobody but ocx_owner reaches a partition.
-- ---------------------------------------------------------------------------
GRANT USAGE, CREATE ON SCHEMA ocx_partitions TO ocx_owner;
GRANT USAGE, CREATE ON SCHEMA ocx_archive TO ocx_owner;
GRANT USAGE ON SCHEMA ocx_archive TO ocx_reader;
ALTER TABLE ocx_archive.events OWNER TO ocx_owner;
GRANT SELECT ON ocx_archive.events TO ocx_reader;

