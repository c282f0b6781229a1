-- ocx 0.2.0 -> 0.3.0, built by the Makefile from sql/upgrade/0.2.0--0.3.0/*.sql
-- (one fragment per issue, concatenated in name order) while 0.3.0 is in
-- development; frozen as a committed file when 0.3.0 is released.  A fragment
-- holds only what its change adds or replaces.  The grant rule
-- (ocx.privilege_rules) and ocx._apply_privileges are stated once, in
-- 99_privileges.sql, as in sql/parts/90_security.sql: a change to either edits
-- that copy, not a fragment of its own.

\echo Use "ALTER EXTENSION ocx UPDATE TO '0.3.0'" to load this file. \quit
