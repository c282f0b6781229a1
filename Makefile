# ocx: PGXS build.  `make`, `make install`, `make test`, `make test-citus`, `make demo`,
# `make bench`, `make bench-scale`, `make bench-citus`, `make soak`, `make deb`, `make test-package`.
#
# The install script of the current version, sql/ocx--$(EXTVERSION).sql, is
# generated from the parts in sql/parts/ (one per subsystem, concatenated in
# name order): the parts are the one truth, the generated file is never edited
# by hand.  Released versions are frozen: their install script and the upgrade
# scripts sql/ocx--A--B.sql are committed files (docs/operations.md, "Releases").

EXTENSION = ocx
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(dir $(firstword $(MAKEFILE_LIST)))ocx.control)

MODULE_big = ocx
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
HEADERS = $(wildcard include/*.h)

SQL_PARTS = $(sort $(wildcard sql/parts/*.sql))
# The upgrade script into the version in development, built the same way from
# one fragment per change in sql/upgrade/OLD--NEW/ (frozen at release).  A
# part that the version adds whole is a fragment as it is: a symbolic link to
# it (98y_partitioned_log.sql), not a copy that can drift from it.
UPGRADE_DIRS = $(notdir $(wildcard sql/upgrade/*--*))
DATA_built = sql/ocx--$(EXTVERSION).sql $(patsubst %,sql/ocx--%.sql,$(UPGRADE_DIRS))
DATA := $(filter-out $(DATA_built),$(wildcard sql/ocx--*.sql))
DOCS := $(wildcard docs/*.md)

PG_CPPFLAGS = -I$(CURDIR)/include
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter
SHLIB_LINK = -ljson-c -lcrypto

# Test inputs (run by test/run.sh through `make test`; see docs/testing.md).
REGRESS = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
ISOLATION = $(patsubst test/specs/%.spec,%,$(sort $(wildcard test/specs/*.spec)))
REGRESS_OPTS = --inputdir=test --load-extension=ocx
ISOLATION_OPTS = --inputdir=test --load-extension=ocx

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)

ifneq ($(wildcard $(PGXS)),)
# ocx supports PostgreSQL 15 only (README.md); refuse another major up front.
PG_MAJOR := $(shell $(PG_CONFIG) --version | sed -n 's/^PostgreSQL \([0-9][0-9]*\).*/\1/p')
ifneq ($(PG_MAJOR),15)
$(error ocx supports PostgreSQL 15 only, but $(PG_CONFIG) is PostgreSQL '$(PG_MAJOR)': set PG_CONFIG to a PostgreSQL 15 pg_config)
endif
include $(PGXS)
else
# Before `make deps` there are no server headers; the targets below still work.
all install:
	@echo "PostgreSQL server headers (PGXS) not found: run 'make deps' (or 'make test', which does it)" >&2
	@exit 1
endif

sql/ocx--$(EXTVERSION).sql: $(SQL_PARTS) ocx.control
	cat $(SQL_PARTS) > $@

.SECONDEXPANSION:
# the directory too: a fragment renamed or removed changes its mtime
sql/ocx--%.sql: $$(sort $$(wildcard sql/upgrade/$$*/*.sql)) sql/upgrade/$$*
	cat $(filter %.sql,$^) > $@

$(OBJS): $(HEADERS)

.PHONY: deps test test-citus bench-citus demo demo-stop bench bench-scale soak deb test-package

deps:
	@test/deps.sh

test:
	@test/run.sh

# ocx on a Citus coordinator and two workers (docs/scaling.md, docs/testing.md)
test-citus:
	@test/citus/run.sh

bench-citus:
	@OCX_CITUS_BENCH=1 test/citus/run.sh

demo:
	@examples/demo.sh start

demo-stop:
	@examples/demo.sh stop

bench:
	@test/bench/run.sh

# the cost curves as the log grows (issue 15; test/bench/scale.sh, docs/performance.md)
bench-scale:
	@test/bench/scale.sh

soak:
	@test/soak/run.sh

# postgresql-15-ocx_<version>_<arch>.deb in dist/ (debian/, docs/operations.md)
deb:
	@test/package/build.sh

# build the package, install it into the system PostgreSQL, run `make
# installcheck` against a cluster that uses the installed files, remove it
test-package:
	@test/package/run.sh
