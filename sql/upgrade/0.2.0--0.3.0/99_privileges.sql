
-- Last: the grant rule over every object, old and new.
SELECT ocx._apply_privileges();
