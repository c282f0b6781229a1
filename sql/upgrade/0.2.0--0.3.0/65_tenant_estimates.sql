-- Tenant policies the planner can estimate.  tenant_id IS NOT DISTINCT FROM
-- (the session's tenant) is estimated from the column's statistics as the
-- equality it negates, and where tenant_id is NULL on every row (every
-- database that does not use tenancy) that gives 0 rows: the planner then
-- took a sequential scan and a sort over all pending commands for a LIMIT 1
-- claim (ocx.claim_commands fell from about 1,200 to 17 round trips/s over
-- 300,000 pending commands).  COALESCE(tenant_id, '') = (the tenant or '') reads
-- the same rows (tenant_id is never '': WITH CHECK keeps the old form, which
-- no '' satisfies) and is estimated as an ordinary equality.
ALTER POLICY events_tenant ON ocx.events
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
ALTER POLICY streams_tenant ON ocx.streams
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
ALTER POLICY projection_errors_tenant ON ocx.projection_errors
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
ALTER POLICY subscription_dead_letters_tenant ON ocx.subscription_dead_letters
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
ALTER POLICY commands_tenant ON ocx.commands
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
ALTER POLICY saga_instances_tenant ON ocx.saga_instances
    USING (COALESCE(tenant_id, '') = (SELECT COALESCE(pg_catalog.current_setting('ocx.tenant', true), '')));
