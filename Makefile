# customer_unify - PGXS build
EXTENSION   = customer_unify
MODULE_big  = customer_unify
OBJS        = src/customer_unify.o src/sync_trigger.o src/backfill.o src/compat_view.o
DATA        = $(wildcard src/sql/customer_unify--*.sql)

# pg_regress tier: sql/*.sql with expected/*.out
REGRESS      = setup split_lifecycle split_errors split_quoting split_dependents split_rollback split_sync upgrade_paths
REGRESS_OPTS = --inputdir=. --load-extension=plpgsql

# isolation tier: test/isolation/specs/*.spec with test/isolation/expected/*.out
ISOLATION      = backfill_concurrent sync_concurrent
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)

PG_CFLAGS += -Wall -Wmissing-prototypes
ifdef WERROR
PG_CFLAGS += -Werror
endif

EXTRA_CLEAN = output_iso results regression.diffs regression.out tmp_check log

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

.PHONY: test demo bench
test:
	bash test/run
demo:
	bash test/demo
bench:
	bash test/bench/run
