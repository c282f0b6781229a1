-- ocx.export() builds each CloudEvent in one C call (ocx._export_cloudevent)
-- instead of ocx.to_cloudevent(e) concatenated with two jsonb_build_object
-- results: the same documents, in less time.  See sql/parts/89a_import.sql.
CREATE FUNCTION ocx._export_cloudevent(e ocx.event, tags text[]) RETURNS jsonb
    LANGUAGE C STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_export_cloudevent';
COMMENT ON FUNCTION ocx._export_cloudevent(ocx.event, text[]) IS
    'internal: what ocx.export() writes for an event: ocx.to_cloudevent(e) with the attributes ocxstream, ocxversion, schemaversion and (when tagged) ocxtags';

CREATE OR REPLACE FUNCTION ocx.export(category text DEFAULT NULL, "after" ocx.cursor DEFAULT NULL,
                           max_count integer DEFAULT NULL)
    RETURNS TABLE ("cursor" ocx.cursor, cloudevent jsonb)
    LANGUAGE sql STABLE PARALLEL RESTRICTED
BEGIN ATOMIC
    SELECT e."cursor",
           ocx._export_cloudevent(e, (SELECT t.tags FROM ocx.events t
                                       WHERE t.global_position OPERATOR(pg_catalog.=) e.global_position))
      FROM ocx._read_log(export."after", export.max_count, NULL,
                         CASE WHEN export.category IS NOT NULL THEN ARRAY[ocx._stream_arg(export.category)] END,
                         false) e;
END;
COMMENT ON FUNCTION ocx.export(text, ocx.cursor, integer) IS
    'the log, or one category, in log order after a cursor as CloudEvents (as stored: not upcast), with the extension attributes ocxstream, ocxversion and ocxtags that ocx.import_commit() reads back; COPY (SELECT cloudevent FROM ocx.export()) TO ... writes newline-delimited JSON';
