-- ocx 0.2.0 -> 0.3.0, built by the Makefile from sql/upgrade/0.2.0--0.3.0/*.sql
-- (one fragment per issue, concatenated in name order) while 0.3.0 is in
-- development; frozen as a committed file when 0.3.0 is released.

\echo Use "ALTER EXTENSION ocx UPDATE TO '0.3.0'" to load this file. \quit
