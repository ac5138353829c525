# customer_unify - PGXS build
EXTENSION   = customer_unify
MODULE_big  = customer_unify
OBJS        = src/customer_unify.o src/guard.o src/plan_cache.o src/owner_context.o src/keys.o \
              src/catalog.o src/engine.o src/mirror.o src/router.o src/backfill.o src/merge_sync.o src/match.o \
              src/normalize.o src/phone.o src/jobs.o src/touch.o src/normalize_write.o src/rekey_sync.o

# The normalizers: libidn2 (C) and libphonenumber (C++, src/phone.cpp, hence
# libstdc++: the module is linked by the C compiler).
SHLIB_LINK += -lphonenumber -lidn2 -lstdc++

# Version scripts.  Released ones are frozen (test/static checks their
# hashes against src/sql/released.sha256); the current release is assembled
# from the pieces below by `make sql` and committed, so that it freezes in
# turn when the next release starts.
CURRENT_VERSION = 1.3
SQL_PIECES  = src/sql/jobs.sql src/sql/engine.sql src/sql/builders.sql src/sql/verify.sql src/sql/guard.sql \
              src/sql/split.sql src/sql/normalize.sql src/sql/match.sql src/sql/merge.sql src/sql/kit.sql src/sql/rekey.sql src/sql/api.sql
SQL_CURRENT = src/sql/customer_unify--$(CURRENT_VERSION).sql src/sql/customer_unify--1.2--$(CURRENT_VERSION).sql
DATA        = $(sort $(wildcard src/sql/customer_unify--*.sql) $(SQL_CURRENT))

# pg_regress tier: sql/*.sql with expected/*.out
REGRESS      = setup normalizers match_quality split_lifecycle split_errors split_quoting split_dependents split_rollback split_sync \
               defects_data defects_outages defects_security engine_caches engine_phases merge_errors merge_lifecycle merge_keys merge_app merge_quality \
               kit_updated_at kit_normalize rekey_lifecycle rekey_errors upgrade_paths jobs_api
REGRESS_OPTS = --inputdir=. --load-extension=plpgsql

# isolation tier: test/isolation/specs/*.spec with test/isolation/expected/*.out
ISOLATION      = backfill_concurrent sync_concurrent merge_concurrent rekey_concurrent
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=output_iso

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)

PG_CFLAGS += -Wall -Wmissing-prototypes
PG_CXXFLAGS += -Wall -Wextra
ifdef WERROR
PG_CFLAGS += -Werror
PG_CXXFLAGS += -Werror
endif

# libphonenumber has no version call: normalizer_version('normalize_phone')
# reports the Debian package's version as it was when the module was built.
PHONENUMBER_VERSION := $(or $(shell dpkg-query -W -f='$${Version}' libphonenumber-dev 2>/dev/null | tr -cd 'A-Za-z0-9.+~:-'),unknown)
PG_CPPFLAGS += -DCU_PHONENUMBER_VERSION='"$(PHONENUMBER_VERSION)"'

EXTRA_CLEAN = output_iso results regression.diffs regression.out tmp_check log

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

all: $(SQL_CURRENT)

# every C file includes the shared header; the C++ one only its own
$(filter-out src/phone.o,$(OBJS)): src/customer_unify.h
src/normalize.o src/phone.o: src/phone.h

# No bitcode of the C++ file for the JIT to inline: C++ with exception
# handlers must not end up inside JIT-compiled expressions.  Its .bc (which
# PGXS builds and installs for every object) is an empty module.
src/phone.bc: src/phone.cpp
	$(COMPILE.c.bc) -o $@ -x c /dev/null

INSTALL_PIECES = src/sql/header-install.sql src/sql/catalog/operation.sql src/sql/catalog/base.sql \
                 src/sql/catalog/engine.sql src/sql/catalog/merge.sql src/sql/catalog/normalize-types.sql \
                 src/sql/catalog/jobs.sql $(SQL_PIECES) src/sql/registry.sql \
                 src/sql/guard-triggers.sql
UPDATE_PIECES  = src/sql/updates/1.2--1.3-pre.sql src/sql/catalog/jobs.sql \
                 $(SQL_PIECES) src/sql/registry.sql src/sql/updates/1.2--1.3-post.sql

src/sql/customer_unify--$(CURRENT_VERSION).sql: $(INSTALL_PIECES)
	cat $^ > $@

src/sql/customer_unify--1.2--$(CURRENT_VERSION).sql: $(UPDATE_PIECES)
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
	@echo src/sql/customer_unify--1.2--$(CURRENT_VERSION).sql $(UPDATE_PIECES)
