-- What ocx.export() writes for an event, built in one C call
-- (ocx._export_cloudevent) instead of ocx.to_cloudevent(e) concatenated with
-- two jsonb_build_object results: the same documents, in less time.
-- ocx.export itself is recreated to call it in 98z7_export_archive.sql.
-- See sql/parts/89a_import.sql.
CREATE FUNCTION ocx._export_cloudevent(e ocx.event, tags text[]) RETURNS jsonb
    LANGUAGE C STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'ocx_export_cloudevent';
COMMENT ON FUNCTION ocx._export_cloudevent(ocx.event, text[]) IS
    'internal: what ocx.export() writes for an event: ocx.to_cloudevent(e) with the attributes ocxstream, ocxversion, schemaversion and (when tagged) ocxtags';
