-- Issue 11, item 7: pg_restore into a cluster whose worker runs keeps the
-- saga checkpoint.  The row of ocx.saga_cursor is created by the install
-- script, and an insert into the table (a restore's COPY of the dumped row)
-- replaces the existing row instead of failing on its key.
-- (Items 4 and 8 changed only C code: the append path and the DROP
-- EXTENSION hook.)

INSERT INTO ocx.saga_cursor (id) VALUES (true) ON CONFLICT ON CONSTRAINT saga_cursor_pkey DO NOTHING;

CREATE FUNCTION ocx._saga_cursor_restore() RETURNS trigger
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE ocx.saga_cursor c
       SET txid = NEW.txid, global_position = NEW.global_position, updated_at = NEW.updated_at
     WHERE c.id OPERATOR(pg_catalog.=) NEW.id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION ocx._saga_cursor_restore() IS
    'trigger: an insert into ocx.saga_cursor (a restore''s COPY) replaces the existing row instead of failing on its key';
CREATE TRIGGER saga_cursor_restore BEFORE INSERT ON ocx.saga_cursor
    FOR EACH ROW EXECUTE FUNCTION ocx._saga_cursor_restore();
