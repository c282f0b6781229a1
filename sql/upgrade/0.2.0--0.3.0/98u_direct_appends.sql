-- The direct append's counter, for tests (src/directappend.c; sql/parts/10_log.sql).

CREATE FUNCTION ocx._direct_appends() RETURNS bigint
    LANGUAGE C VOLATILE PARALLEL RESTRICTED
    AS 'MODULE_PATHNAME', 'ocx_direct_appends';
COMMENT ON FUNCTION ocx._direct_appends() IS
    'internal: how many appends this backend wrote by the direct path (src/directappend.c), for tests';
