-- Issue 12, read-your-writes: ocx.last_append_cursor() hands back the cursor
-- of what this session appended last, and ocx.wait_for(projection, cursor,
-- timeout) waits, woken by the worker's latch, until the projection has
-- passed it.  Both are granted to ocx_reader by ocx.privilege_rules()
-- (90_security.sql) when 99_privileges.sql applies it.

-- Read-your-writes: the cursor of what this session appended last, for
-- ocx.wait_for (docs/projections.md#read-your-writes).
CREATE FUNCTION ocx.last_append_cursor() RETURNS ocx.cursor
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_last_append_cursor';
COMMENT ON FUNCTION ocx.last_append_cursor() IS
    'the cursor of the last event this session''s last append stored (or found stored, for an idempotent retry); kept after commit until the next append; NULL before any append and after the appending (sub)transaction rolled back';

-- Read-your-writes (issue 12): wait until a projection has passed a cursor.
-- Runs with the caller's rights; see src/waitfor.c.
CREATE FUNCTION ocx.wait_for(projection text, cursor ocx.cursor, timeout interval) RETURNS boolean
    LANGUAGE C VOLATILE PARALLEL UNSAFE
    AS 'MODULE_PATHNAME', 'ocx_wait_for';
COMMENT ON FUNCTION ocx.wait_for(text, ocx.cursor, interval) IS
    'wait until the projection has passed the cursor (its checkpoint is at or after it; or the cursor''s transaction has ended and the projection is inline or has no event it wants up to the cursor left): true, or false when the timeout passes first; woken by the worker''s latch';
