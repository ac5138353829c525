# customer_unify - PGXS build
EXTENSION   = customer_unify
MODULE_big  = customer_unify
OBJS        = src/customer_unify.o src/guard.o src/plan_cache.o src/owner_context.o src/keys.o \
              src/catalog.o src/engine.o src/mirror.o src/router.o src/backfill.o src/merge_sync.o src/match.o

# Version scripts.  Released ones are frozen (test/static checks their
# hashes against src/sql/released.sha256); the current release is assembled
# from the pieces below by `make sql` and committed, so that it freezes in
# turn when the next release starts.
CURRENT_VERSION = 1.2
SQL_PIECES  = src/sql/engine.sql src/sql/builders.sql src/sql/verify.sql src/sql/guard.sql \
              src/sql/split.sql src/sql/match.sql src/sql/merge.sql src/sql/api.sql
SQL_CURRENT = src/sql/customer_unify--$(CURRENT_VERSION).sql src/sql/customer_unify--1.1--$(CURRENT_VERSION).sql
DATA        = $(sort $(wildcard src/sql/customer_unify--*.sql) $(SQL_CURRENT))

# pg_regress tier: sql/*.sql with expected/*.out
REGRESS      = setup match_quality split_lifecycle split_errors split_quoting split_dependents split_rollback split_sync \
               defects_data defects_outages defects_security engine_caches engine_phases merge_errors merge_lifecycle upgrade_paths
REGRESS_OPTS = --inputdir=. --load-extension=plpgsql

# isolation tier: test/isolation/specs/*.spec with test/isolation/expected/*.out
ISOLATION      = backfill_concurrent sync_concurrent merge_concurrent
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)

PG_CFLAGS += -Wall -Wmissing-prototypes
ifdef WERROR
PG_CFLAGS += -Werror
endif

EXTRA_CLEAN = output_iso results regression.diffs regression.out tmp_check log

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: $(SQL_CURRENT)

# every C file includes the shared header
$(OBJS): src/customer_unify.h

INSTALL_PIECES = src/sql/header-install.sql src/sql/catalog/operation.sql src/sql/catalog/base.sql \
                 src/sql/catalog/engine.sql src/sql/catalog/merge.sql $(SQL_PIECES) src/sql/registry.sql \
                 src/sql/guard-triggers.sql
UPDATE_PIECES  = src/sql/updates/1.1--1.2-pre.sql src/sql/catalog/merge.sql \
                 $(SQL_PIECES) src/sql/registry.sql src/sql/updates/1.1--1.2-post.sql

src/sql/customer_unify--$(CURRENT_VERSION).sql: $(INSTALL_PIECES)
	cat $^ > $@

src/sql/customer_unify--1.1--$(CURRENT_VERSION).sql: $(UPDATE_PIECES)
	cat $^ > $@

.PHONY: sql test demo bench
sql: $(SQL_CURRENT)
test:
	bash test/run
demo:
	bash test/demo
bench:
	bash test/bench/run

# for test/static/run: each assembled script and its pieces, one line each
print-assembly:
	@echo src/sql/customer_unify--$(CURRENT_VERSION).sql $(INSTALL_PIECES)
	@echo src/sql/customer_unify--1.1--$(CURRENT_VERSION).sql $(UPDATE_PIECES)
