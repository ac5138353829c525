#!/usr/bin/python3
"""Application tier, seed 004: the three SQLAlchemy Customer models of the
seed keep working through a customer_unify merge into core.customers.

    PGHOST=/tmp PGPORT=5562 PGUSER=postgres PGDATABASE=postgres python3 test/app/test_seed004.py
    python3 test/app/test_seed004.py Seed004Merge.test_05_live_writes_of_the_three_models

The connection comes from the libpq environment (PGHOST, PGPORT, PGUSER,
PGDATABASE, PGPASSWORD); the role must be able to create schemas and the
extension (superuser in practice).  Use a scratch database: at start the test
rolls back or purges the migrations it made in an earlier run (names
app4_*, app4rb_*, app4nn_*, app4uq_*, app4rf_*) and drops its schemas (core,
legacy and the fresh copies: rb*, sh*, nn*, uq*, rf*).  It creates the extension if
it is missing.

Output: one line per test case, `ok N - name` or `not ok N - name`, a skipped
case as `ok N - name # SKIP reason` (counted as passed); failure details as
`#` lines; the last line `# app: N passed (N of them skipped), N failed`.
Exit status 1 on any failure.

Environment:
  CU_APP_KNOWN_BUGS=1   also run the cases that document a known extension
                        bug (skipped otherwise; see KnownBugs)
"""
import os
import sys
import threading
import time
import traceback
import unittest
import uuid
from datetime import datetime

os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")   # 1.4's note about 2.0

from sqlalchemy import create_engine, inspect, text  # noqa: E402
from sqlalchemy.exc import IntegrityError, ProgrammingError  # noqa: E402
from sqlalchemy.orm import Session as _Session  # noqa: E402

sys.dont_write_bytecode = True          # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import (AIBase, AICustomer, Booking, Conversation, CoreBase,  # noqa: E402
                    Customer, CustomerStatus, LegacyBase, LegacyBooking,
                    LegacyCustomer)

RUN = format(int(time.time() * 1000) % 0xFFFFFFFF, "08x")
MIG = "app4_" + RUN          # the merge of seed 004
RB = "app4rb_" + RUN         # the merge rolled back after cutover
NN = "app4nn_" + RUN         # known bug: NOT NULL target columns
UQ = "app4uq_" + RUN         # known bug: the core app inserts a person the merge already made
RF = "app4rf_" + RUN         # known bug: rollback after the core app referenced a merged row
MY_SCHEMAS = ["core", "legacy", "rbcore", "rblegacy", "shcore", "shlegacy", "nncore", "nnlegacy", "uqcore", "uqlegacy",
              "rfcore", "rflegacy"]
LIVE_STATES = ("planned", "started", "backfilled", "verified", "cut_over", "failed")
APP_OPTIONS = "-c lock_timeout=10s -c statement_timeout=60s"
T0 = datetime(2024, 6, 1, 12, 0, 0)
T1 = datetime(2024, 7, 1, 12, 0, 0)


def Session(eng):
    """The applications' sessions: objects stay readable after commit."""
    return _Session(eng, future=True, expire_on_commit=False)


# which relation an unqualified name reaches under a session's search_path
WHERE_IS = "SELECT n.nspname::text, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace " \
           "WHERE c.oid = to_regclass('%s')"


def ai_id(n):
    return "6f1c7a52-0000-4000-8000-%012d" % n


def core_id(n):
    return uuid.UUID("00000000-0000-4000-8000-%012d" % n)


# --------------------------------------------------------------- engines
def engine(search_path="public", schema_map=None):
    """An application's engine: libpq environment, its own search_path."""
    opts = "%s -c search_path=%s" % (APP_OPTIONS, search_path)
    eng = create_engine("postgresql+psycopg2://", connect_args={"options": opts},
                        future=True, pool_size=3, max_overflow=2)
    if schema_map:
        eng = eng.execution_options(schema_translate_map=schema_map)
    return eng


ADMIN = None      # autocommit connection of the DBA


def dba():
    global ADMIN
    if ADMIN is None:
        eng = create_engine("postgresql+psycopg2://", future=True,
                            connect_args={"options": "-c client_min_messages=warning"},
                            isolation_level="AUTOCOMMIT")
        ADMIN = eng.connect()
    return ADMIN


def q(sql, **params):
    r = dba().execute(text(sql), params)
    return r.all() if r.returns_rows else []


def q1(sql, **params):
    return dba().execute(text(sql), params).scalar()


def cleanup():
    """Undo what an earlier run left: migrations first (the extension's DDL
    guard refuses to drop the tables of a live one), then the schemas."""
    q("CREATE EXTENSION IF NOT EXISTS customer_unify")
    # the core app's bookings may point at rows a merge made, which keeps
    # rollback from deleting them (see KnownBugs): the schemas go anyway
    for s in MY_SCHEMAS:
        if q1("SELECT to_regclass(:t) IS NOT NULL", t=s + ".bookings") and s.endswith("core"):
            q('DELETE FROM "%s".bookings' % s)
    for name, state in q("SELECT name, state FROM customer_unify.migration "
                         "WHERE name ~ '^app4(rb|nn|uq|rf)?_' ORDER BY id"):
        try:
            if state in LIVE_STATES:
                q("SELECT customer_unify.rollback(:n)", n=name)
            elif state == "finalized" and q1("SELECT count(*) FROM pg_namespace WHERE nspname IN "
                                             "(:n || '_merge', :n || '_compat', :n || '_archive')", n=name):
                q("SELECT customer_unify.purge(:n)", n=name)
        except Exception as e:  # already purged, ...
            print("# cleanup: %s (%s): %s" % (name, state, str(e).splitlines()[0]))
    for s in MY_SCHEMAS:
        q('DROP SCHEMA IF EXISTS "%s" CASCADE' % s)


def merge_spec(core, legacy):
    """The merge of seed 004 into <core>.customers (sql/merge_lifecycle.sql's
    spec, for these models' columns)."""
    ai_first = "split_part(btrim(name), ' ', 1)"
    return {
        "target": {"table": core + ".customers"},
        "sources": [
            {"table": legacy + ".customers", "tag": "legacy", "priority": 1,
             "columns": {"first_name": "first_name", "last_name": "last_name",
                         "email": "lower(btrim(email))", "phone": "nullif(btrim(phone), '')",
                         "marketing_consent": "marketing_emails",
                         "dietary_restrictions": "dietary_preferences",
                         "customer_metadata": "jsonb_build_object('legacy_id', id, 'status', status, "
                                              "'loyalty_points', loyalty_points)",
                         "created_at": "created_at", "updated_at": "updated_at"}},
            {"table": legacy + ".ai_customers", "tag": "ai", "priority": 2,
             "columns": {"first_name": ai_first,
                         "last_name": "nullif(btrim(substr(btrim(name), length(%s) + 1)), '')" % ai_first,
                         "email": "nullif(lower(btrim(email)), '')", "phone": "nullif(btrim(phone), '')",
                         "customer_metadata": "jsonb_build_object('ai_id', id)",
                         "created_at": "created_at", "updated_at": "updated_at"}},
        ],
        "match": [
            {"rule": "email", "key": "lower(btrim(email))"},
            {"rule": "phone", "key": "nullif(right(regexp_replace(phone, '[^0-9]', '', 'g'), 10), '')"},
        ],
        "survivorship": {"default": "priority", "columns": {"updated_at": "newest:updated_at"}},
        "references": [{"table": legacy + ".conversations", "column": "customer_id", "source": "ai",
                        "new_column": "customer_uuid"}],
    }


def plan(name, core, legacy):
    import json
    return q1("SELECT customer_unify.merge(:n, CAST(:s AS jsonb))", n=name, s=json.dumps(merge_spec(core, legacy)))


def state(name):
    return q1("SELECT state FROM customer_unify.migration WHERE name = :n", n=name)


def mig_id(name):
    return q1("SELECT id FROM customer_unify.migration WHERE name = :n", n=name)


def failing_checks(name):
    return [tuple(r) for r in q("SELECT check_name, expected, actual FROM customer_unify.verify(:n) WHERE NOT ok", n=name)]


def norm(email):
    return email.strip().lower() if email is not None and email.strip() else None


# --------------------------------------------------------------- the data
class World:
    """The application's three databases' worth of people, and the truth the
    test knows about them: which row (core/legacy/ai, key) is which person."""

    def __init__(self, core, legacy, core_schema_map=None):
        self.core_schema = core
        self.legacy_schema = legacy
        self.core_eng = engine("public", core_schema_map)
        self.legacy_eng = engine("%s,public" % legacy)
        self.truth = {}            # (tag, key) -> person
        self.email = {}            # person -> the normalized email core must show
        self.legacy_ids = {}       # label -> legacy integer id

    def compat(self, name):
        """The legacy and AI models' engine after cutover: their own views first."""
        return engine("%s_compat,%s,public" % (name, self.legacy_schema))

    def create_schema(self):
        q('CREATE SCHEMA "%s"' % self.core_schema)
        q('CREATE SCHEMA "%s"' % self.legacy_schema)
        CoreBase.metadata.create_all(self.core_eng)
        LegacyBase.metadata.create_all(self.legacy_eng)
        AIBase.metadata.create_all(self.legacy_eng)

    def load(self):
        """Made-up data with duplicates across the three tables: drifted email
        case and whitespace, phone formats, duplicates inside legacy and AI."""
        core_rows = [  # person, first, last, email, phone
            ("ana", "Ana", "Lima", "ana@example.com", "+14155550101"),
            ("bo", "Bo", "Chen", "bo@example.com", "+14155550102"),
            ("fay", "Fay", "Gil", "fay@example.com", "+14155550106"),
            ("gus", "Gus", "Hill", "gus@example.com", "+14155550107"),
            ("jo", "Jo", "King", "jo@example.com", "+14155550110"),
            ("nia", "Nia", "Owens", "nia@example.com", "+14155550114"),
        ]
        legacy_rows = [  # label, person, first, last, email, phone
            ("ana", "ana", "Ana", "Lima", " ANA@Example.com ", "(415) 555-0101"),
            ("bo", "bo", "Bo", "Chen", "Bo@Example.COM", "415-555-0102"),
            ("cy", "cy", "Cy", "Diaz", "cy@example.com", "415 555 0103"),
            ("eli1", "eli", "Eli", "Ford", "eli@example.com", "415.555.0105"),
            ("eli2", "eli", "Eli", "Ford", "ELI@example.com ", None),          # Eli again, inside legacy
            ("hal", "hal", "Hal", "Ito", "hal@example.com", "+1-415-555-0108"),
            ("jo", "jo", "Joanna", "King", "JO@example.com", None),
            ("kim", "kim", "Kim", "Lee", "kim@example.com", "(415) 555-0111"),
        ]
        ai_rows = [  # n, person, email, name, phone
            (1, "ana", "ana@example.com ", "Ana Lima", "415.555.0101"),
            (2, "bo", None, "Bo Chen", "+1 (415) 555-0102"),
            (3, "cy", "CY@example.com", "Cy Diaz", None),
            (4, "dee", "dee@example.com", "Dee Evans", "4155550104"),
            (5, "gus", None, "Gus Hill", "415/555/0107"),
            (6, "ivy", "ivy@example.com", "Ivy Jones", "4155550109"),
            (7, "ivy", "IVY@Example.com", "Ivy Jones", "+1 415 555 0109"),
            (8, "kim", "kim.lee@work.example", "Kim Lee", "415-555-0111"),
        ]
        with Session(self.core_eng) as s, s.begin():
            for i, (p, f, l, e, ph) in enumerate(core_rows, 1):
                s.add(Customer(id=core_id(i), first_name=f, last_name=l, email=e, phone=ph,
                               created_at=T0, updated_at=T0))
                self.truth[("target", str(core_id(i)))] = p
                self.email[p] = e
            s.flush()
            s.add_all([Booking(id=core_id(101), customer_id=core_id(1), event_date=T0, guests=4, total_cents=12000),
                       Booking(id=core_id(102), customer_id=core_id(2), event_date=T0, guests=2, total_cents=8000)])
        with Session(self.legacy_eng) as s, s.begin():
            objs = {}
            for label, p, f, l, e, ph in legacy_rows:
                objs[label] = LegacyCustomer(first_name=f, last_name=l, email=e, phone=ph,
                                             status=CustomerStatus.vip if label == "ana" else CustomerStatus.active,
                                             loyalty_points=len(label) * 10, marketing_emails=(label == "cy"),
                                             created_at=T0, updated_at=T0)
                s.add(objs[label])
                s.flush()
                self.legacy_ids[label] = objs[label].id
                self.truth[("legacy", str(objs[label].id))] = p
                self.email.setdefault(p, norm(e))
            for n, label in enumerate(["ana", "cy", "cy", "eli1", "kim"], 1):
                s.add(LegacyBooking(customer_id=objs[label].id, booking_date=T0, party_size=n, total_cents=1000 * n))
        with Session(self.legacy_eng) as s, s.begin():
            for n, p, e, name, ph in ai_rows:
                s.add(AICustomer(id=ai_id(n), email=e, name=name, phone=ph, created_at=T0, updated_at=T0))
                self.truth[("ai", ai_id(n))] = p
                self.email.setdefault(p, norm(e))
            s.flush()
            s.add_all([Conversation(id=ai_id(901), customer_id=ai_id(1), channel="web", created_at=T0),
                       Conversation(id=ai_id(902), customer_id=ai_id(4), channel="sms", created_at=T0),
                       Conversation(id=ai_id(903), customer_id=ai_id(2), channel="web", created_at=T0),
                       Conversation(id=ai_id(904), customer_id=None, channel="web", created_at=T0)])

    def people(self):
        return set(self.truth.values())

    # ---- assertions over the whole world
    def check_people(self, tc, name, where=""):
        """The core model sees every person once:
          - every row of the three tables is in the crosswalk, nothing else is;
          - all rows of one person map to one core row, distinct people to
            distinct rows, and a core row of its own (an anchor) is its person's row;
          - core.customers holds exactly those rows (count = number of people);
          - no two core rows share a normalized email; each person's core row
            shows the email survivorship should keep."""
        mid = mig_id(name)
        idmap = {(t, k): v for t, k, v in q("SELECT source_tag, old_key, target_key FROM customer_unify.id_map "
                                            "WHERE migration_id = :m", m=mid)}
        tc.assertEqual(sorted(set(idmap) - set(self.truth)), [], "%s: crosswalk rows of no known row" % where)
        tc.assertEqual(sorted(set(self.truth) - set(idmap)), [], "%s: rows missing from the crosswalk" % where)
        per_person = {}
        for k, p in self.truth.items():
            per_person.setdefault(p, set()).add(idmap[k])
        spread = {p: sorted(ts) for p, ts in per_person.items() if len(ts) != 1}
        tc.assertEqual(spread, {}, "%s: a person's rows map to several core rows" % where)
        target = {p: next(iter(ts)) for p, ts in per_person.items()}
        tc.assertEqual(len(set(target.values())), len(target), "%s: two people map to one core row" % where)
        for (tag, key), p in self.truth.items():
            if tag == "target":
                tc.assertEqual(target[p], key, "%s: %s's core row is not its anchor" % (where, p))
        with Session(self.core_eng) as s:
            rows = s.query(Customer).all()
            tc.assertEqual(s.query(Customer).count(), len(self.people()),
                           "%s: core.customers rows != distinct people" % where)
            by_id = {str(c.id): c for c in rows}
            tc.assertEqual(set(by_id), set(target.values()), "%s: core rows are not exactly the people's rows" % where)
            emails = [norm(c.email) for c in rows]
            tc.assertEqual(sorted(e for e in set(emails) if emails.count(e) > 1), [],
                           "%s: core rows sharing a normalized email" % where)
            shown = {p: by_id[t].email for p, t in target.items()}
            tc.assertEqual(shown, {p: self.email[p] for p in target}, "%s: core emails" % where)
        return target

    def check_references(self, tc, name, target, archived=False):
        """Every legacy booking and every conversation points (new column) at
        the core row of its old customer's person."""
        ref = dict(q("SELECT (r->>'relid')::oid::regclass::text, r->>'n' FROM customer_unify.migration m, "
                     "jsonb_array_elements(m.spec->'references') r WHERE m.name = :n", n=name))
        L = self.legacy_schema
        if archived:   # finalize dropped the old columns; the archive keeps them
            bk = q('SELECT b.id, a.customer_id, b.customer_id_merged FROM "%s".bookings b JOIN "%s_archive".ref%s_customer_id a '
                   'ON a.id = b.id ORDER BY b.id' % (L, name, ref["%s.bookings" % L]))
            cv = q('SELECT c.id, a.customer_id, c.customer_uuid FROM "%s".conversations c JOIN "%s_archive".ref%s_customer_id a '
                   'ON a.id = c.id ORDER BY c.id' % (L, name, ref["%s.conversations" % L]))
        else:
            bk = q('SELECT id, customer_id, customer_id_merged FROM "%s".bookings ORDER BY id' % L)
            cv = q('SELECT id, customer_id, customer_uuid FROM "%s".conversations ORDER BY id' % L)
        tc.assertEqual(q1('SELECT count(*) FROM "%s".bookings' % L), len(bk), "bookings without archived reference")
        tc.assertEqual(q1('SELECT count(*) FROM "%s".conversations' % L), len(cv), "conversations without archived reference")
        got = [(b, str(m) if m else None) for b, _, m in bk]
        want = [(b, target[self.truth[("legacy", str(c))]]) for b, c, _ in bk]
        tc.assertEqual(got, want, "legacy bookings re-pointed to their person's core row")
        got = [(c, str(m) if m else None) for c, _, m in cv]
        want = [(c, target[self.truth[("ai", old)]] if old else None) for c, old, _ in cv]
        tc.assertEqual(got, want, "conversations re-pointed to their person's core row")

    def core_row(self, person_email):
        with Session(self.core_eng) as s:
            c = s.query(Customer).filter_by(email=person_email).one_or_none()
            return None if c is None else (c.first_name, c.last_name, c.email, c.phone)


def rows_of(table, cols="*"):
    return sorted(r[0] for r in q("SELECT t::text FROM (SELECT %s FROM %s) t" % (cols, table)))


def shape(schemas):
    """Columns, triggers, constraints and indexes of every table of the schemas."""
    return [tuple(r) for r in q("""
        SELECT c.oid::regclass::text,
               (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull::text
                                  || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ',' ORDER BY a.attnum)
                  FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
               (SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)
                  FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
               (SELECT string_agg(k.conname || ':' || pg_get_constraintdef(k.oid) || ':' || k.convalidated::text, ',' ORDER BY k.conname)
                  FROM pg_constraint k WHERE k.conrelid = c.oid),
               (SELECT string_agg(pg_get_indexdef(i.indexrelid), ',' ORDER BY pg_get_indexdef(i.indexrelid)) FROM pg_index i WHERE i.indrelid = c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY (:s) AND c.relkind IN ('r', 'v', 'S')
         ORDER BY 1""", s=schemas)]


# --------------------------------------------------------------- the tests
class Phased(unittest.TestCase):
    """Test cases that are phases of one lifecycle: a phase after a failed one
    fails at once, naming it, rather than failing in a confusing way."""
    failed_phase = None

    def setUp(self):
        if type(self).failed_phase:
            self.fail("not run: phase %s failed" % type(self).failed_phase)

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        r = super().run(result)
        if result is not None and len(result.failures) + len(result.errors) > before and not type(self).failed_phase:
            type(self).failed_phase = self._testMethodName
        return r


class Seed004Merge(Phased):
    """One merge of the seed's three models into core.customers, through its
    whole life, with the applications writing all along."""
    W = None

    @classmethod
    def setUpClass(cls):
        cls.W = World("core", "legacy")

    def test_01_models_create_and_load(self):
        """the three models create their tables and load duplicated people"""
        W = self.W
        W.create_schema()
        W.load()
        self.assertEqual(q1("SELECT count(*) FROM core.customers"), 6)
        self.assertEqual(q1("SELECT count(*) FROM legacy.customers"), 8)
        self.assertEqual(q1("SELECT count(*) FROM legacy.ai_customers"), 8)
        self.assertEqual(len(W.people()), 12)
        # the legacy booking's foreign key and the conversation's lack of one
        self.assertEqual(q1("SELECT count(*) FROM pg_constraint WHERE conrelid = 'legacy.bookings'::regclass AND contype = 'f'"), 1)
        self.assertEqual(q1("SELECT count(*) FROM pg_constraint WHERE conrelid = 'legacy.conversations'::regclass AND contype = 'f'"), 0)

    def test_02_plan(self):
        """merge() plans: sources, target, the FK reference found, the named one kept"""
        self.assertGreater(plan(MIG, "core", "legacy"), 0)
        self.assertEqual(state(MIG), "planned")
        rel = q("SELECT r.tag, r.role, r.relid::text FROM customer_unify.migration_relation r "
                "JOIN customer_unify.migration m ON m.id = r.migration_id WHERE m.name = :n ORDER BY 1", n=MIG)
        self.assertEqual([tuple(r) for r in rel],
                         [("ai", "source", "legacy.ai_customers"), ("legacy", "source", "legacy.customers"),
                          ("ref1", "reference", "legacy.conversations"), ("ref2", "reference", "legacy.bookings"),
                          ("target", "target", "core.customers")])
        refs = q("SELECT (r->>'relid')::oid::regclass::text, r->>'source', r->>'new_column' FROM customer_unify.migration m, "
                 "jsonb_array_elements(m.spec->'references') r WHERE m.name = :n ORDER BY 1", n=MIG)
        self.assertEqual([tuple(r) for r in refs], [("legacy.bookings", "legacy", "customer_id_merged"),
                                                    ("legacy.conversations", "ai", "customer_uuid")])
        self.assertEqual(q1("SELECT count(*) FROM pg_namespace WHERE nspname LIKE :p", p=MIG + "\\_%"), 0)

    def test_03_start_and_backfill(self):
        """start and CALL backfill (autocommit): every person once in core"""
        self.assertEqual(q1("SELECT customer_unify.start(:n)", n=MIG), "started")
        q("CALL customer_unify.backfill(:n, batch_size => 3)", n=MIG)
        self.assertEqual(state(MIG), "backfilled")
        self.assertEqual(failing_checks(MIG), [])
        target = self.W.check_people(self, MIG, "after backfill")
        self.W.check_references(self, MIG, target)
        # merged rows carry what survivorship chose: Cy has no anchor, legacy (priority 1) wins
        self.assertEqual(self.W.core_row("cy@example.com"), ("Cy", "Diaz", "cy@example.com", "415 555 0103"))
        # an anchor keeps its own values (legacy calls Jo 'Joanna')
        self.assertEqual(self.W.core_row("jo@example.com"), ("Jo", "King", "jo@example.com", "+14155550110"))
        # a person only the AI table knows, its single name split
        self.assertEqual(self.W.core_row("dee@example.com"), ("Dee", "Evans", "dee@example.com", "4155550104"))

    def test_04_reads_while_live(self):
        """while live, each model reads its own table unchanged"""
        W = self.W
        with Session(W.legacy_eng) as s:
            self.assertEqual(s.query(LegacyCustomer).count(), 8)
            ana = s.get(LegacyCustomer, W.legacy_ids["ana"])
            self.assertEqual((ana.email, ana.phone, ana.status), (" ANA@Example.com ", "(415) 555-0101", CustomerStatus.vip))
            self.assertEqual(sorted(b.party_size for b in s.get(LegacyCustomer, W.legacy_ids["cy"]).bookings), [2, 3])
        with Session(W.legacy_eng) as s:
            self.assertEqual(s.query(AICustomer).count(), 8)
            self.assertEqual([c.id for c in s.get(AICustomer, ai_id(4)).conversations], [ai_id(902)])
        with Session(W.core_eng) as s:
            ana = s.get(Customer, core_id(1))
            self.assertEqual([b.total_cents for b in ana.bookings], [12000])

    def test_05_live_writes_of_the_three_models(self):
        """live: legacy and core sessions at once, AI writes; inserts, updates, deletes merge as they land"""
        W = self.W
        L, C = Session(W.legacy_eng), Session(W.core_eng)
        try:
            # the legacy app signs up Lou, in an open transaction
            lou = LegacyCustomer(first_name="Lou", last_name="Ng", email="Lou@Example.com ", phone="415 555 0112",
                                 created_at=T0, updated_at=T0)
            L.add(lou)
            L.flush()
            # meanwhile the core app signs up Max (get or create by email) and changes Fay's phone
            self.assertIsNone(C.query(Customer).filter_by(email="max@example.com").one_or_none())
            C.add(Customer(id=core_id(7), first_name="Max", last_name="Pak", email="max@example.com",
                           phone="+14155550113"))
            C.get(Customer, core_id(3)).phone = "+14155550116"
            C.flush()
            # the legacy app changes Hal and removes Eli's duplicate
            hal = L.get(LegacyCustomer, W.legacy_ids["hal"])
            hal.phone, hal.special_notes, hal.last_name = "415-555-0199", "prefers window seats", "Itoh"
            L.delete(L.get(LegacyCustomer, W.legacy_ids["eli2"]))
            L.add(LegacyBooking(customer=L.get(LegacyCustomer, W.legacy_ids["kim"]), booking_date=T0, party_size=6))
            L.flush()
            # the core app deletes Nia and books for Max
            C.delete(C.get(Customer, core_id(6)))
            C.add(Booking(id=core_id(103), customer_id=core_id(7), event_date=T0, total_cents=5000))
            C.flush()
            # each session sees its own writes merged, not the other's uncommitted ones
            self.assertIsNone(C.query(Customer).filter(Customer.email == "lou@example.com").one_or_none())
            self.assertEqual(L.execute(text("SELECT count(*) FROM core.customers WHERE email = 'lou@example.com'")).scalar(), 1)
            self.assertEqual(L.execute(text("SELECT count(*) FROM core.customers WHERE email = 'max@example.com'")).scalar(), 0)
            C.commit()
            L.commit()
        finally:
            L.close()
            C.close()
        W.truth[("legacy", str(lou.id))] = "lou"
        W.email["lou"] = "lou@example.com"
        W.truth[("target", str(core_id(7)))] = "max"
        W.email["max"] = "max@example.com"
        del W.truth[("legacy", str(W.legacy_ids["eli2"]))]
        del W.truth[("target", str(core_id(6)))]
        del W.email["nia"]
        self.assertEqual(W.core_row("hal@example.com"), ("Hal", "Itoh", "hal@example.com", "415-555-0199"))
        self.assertEqual(W.core_row("fay@example.com")[3], "+14155550116")
        self.assertIsNone(W.core_row("nia@example.com"))

        # the core app's get-or-create finds the person the legacy app signed up
        with Session(W.core_eng) as s, s.begin():
            found = s.query(Customer).filter_by(email="lou@example.com").all()
            self.assertEqual([(c.first_name, c.last_name, c.phone) for c in found], [("Lou", "Ng", "415 555 0112")])
            s.add(Booking(id=core_id(104), customer_id=found[0].id, event_date=T0, total_cents=700))

        # the AI model: Max from the AI side, Dee leaves, Ivy changes her name, conversations
        with Session(W.legacy_eng) as s, s.begin():
            s.add(AICustomer(id=ai_id(9), email=" MAX@example.com", name="Max Pak", phone=None))
            s.delete(s.get(AICustomer, ai_id(4)))
            s.query(Conversation).filter_by(customer_id=ai_id(4)).delete()
            s.get(AICustomer, ai_id(6)).name = "Ivy Jones-Park"
            s.add_all([Conversation(id=ai_id(905), customer_id=ai_id(9), channel="web"),
                       Conversation(id=ai_id(906), customer_id=ai_id(8), channel="sms")])
        W.truth[("ai", ai_id(9))] = "max"
        del W.truth[("ai", ai_id(4))]
        del W.email["dee"]
        self.assertEqual(W.core_row("ivy@example.com")[:2], ("Ivy", "Jones-Park"))
        self.assertIsNone(W.core_row("dee@example.com"))
        # Max's anchor keeps its values; the AI row joined it
        self.assertEqual(W.core_row("max@example.com"), ("Max", "Pak", "max@example.com", "+14155550113"))

        target = W.check_people(self, MIG, "after live writes")
        W.check_references(self, MIG, target)
        with Session(W.core_eng) as s:
            lou_row = s.query(Customer).filter_by(email="lou@example.com").one()
            self.assertEqual(sorted(b.total_cents for b in lou_row.bookings), [700])

    def test_06_same_person_at_once(self):
        """live: the legacy app writes a person the core app is creating in an open transaction"""
        W = self.W
        C = Session(W.core_eng)
        outcome = {}

        def legacy_signup():
            try:
                with Session(W.legacy_eng) as s, s.begin():
                    z = LegacyCustomer(first_name="Zed", last_name="Ash", email=" ZED@example.com", phone="415 555 0119",
                                       created_at=T0, updated_at=T0)
                    s.add(z)
                    s.flush()
                    outcome["id"] = z.id
            except Exception as e:  # the legacy app's write failed
                outcome["error"] = e
        try:
            C.add(Customer(id=core_id(8), first_name="Zed", last_name="Ash", email="zed@example.com", phone="+14155550119"))
            C.flush()
            t = threading.Thread(target=legacy_signup)
            t.start()
            t.join(1.0)            # it waits for the core transaction (same email in core.customers)
            C.commit()
            t.join(30)
        finally:
            C.close()
        self.assertFalse(t.is_alive(), "legacy write still blocked")
        self.assertNotIn("error", outcome, "the legacy application's own write failed")
        W.truth[("target", str(core_id(8)))] = "zed"
        W.truth[("legacy", str(outcome["id"]))] = "zed"
        W.email["zed"] = "zed@example.com"
        # the legacy row could not see the uncommitted core row: its cluster is
        # held for review (the unique email refused it); the DBA re-matches
        # or, when matching it would have waited for the core transaction, it
        # was deferred (the application's write never waits for the merge):
        # the next write, verify or rematch applies it
        held = q1("SELECT count(*) FROM customer_unify.merge_held h WHERE h.migration_id = :m", m=mig_id(MIG))
        deferred = q1('SELECT count(*) FROM "%s_merge".pending' % MIG)
        print("#   (the legacy write %s)" % ("was held for review; rematch() resolves it" if held else
                                          "was deferred; rematch() applies it" if deferred else "joined the core row at once"))
        if held:
            self.assertIn("clusters held for review", [c[0] for c in failing_checks(MIG)])
        if held or deferred:
            q("SELECT customer_unify.rematch(:n)", n=MIG)
        self.assertEqual(q1('SELECT count(*) FROM "%s_merge".pending' % MIG), 0)
        self.assertEqual(q1("SELECT count(*) FROM customer_unify.merge_held h WHERE h.migration_id = :m", m=mig_id(MIG)), 0)
        W.check_people(self, MIG, "after the same person at once")

    def test_07_verify(self):
        """verify: every check ok"""
        checks = q("SELECT check_name, ok FROM customer_unify.verify(:n)", n=MIG)
        self.assertGreater(len(checks), 10)
        self.assertEqual([c for c, ok in checks if not ok], [])
        self.assertEqual(state(MIG), "verified")

    def test_08_cutover_old_shape_through_views(self):
        """cutover: legacy and AI models read their old shape with old keys through the compat views"""
        W = self.W
        base = {}
        with Session(W.legacy_eng) as s:
            base["legacy"] = [tuple(getattr(c, a.key) for a in inspect(LegacyCustomer).column_attrs)
                              for c in s.query(LegacyCustomer).order_by(LegacyCustomer.id)]
            base["ai"] = [tuple(getattr(c, a.key) for a in inspect(AICustomer).column_attrs)
                          for c in s.query(AICustomer).order_by(AICustomer.id)]
        self.assertEqual(q1("SELECT customer_unify.cutover(:n)", n=MIG), "cut_over")
        views = q("SELECT table_name FROM information_schema.views WHERE table_schema = :s ORDER BY 1", s=MIG + "_compat")
        self.assertEqual([v[0] for v in views], ["ai_customers", "customers"])
        for view, table in (("customers", "customers"), ("ai_customers", "ai_customers")):
            cols = "SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position) " \
                   "FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"
            self.assertEqual(q1(cols, s=MIG + "_compat", t=view), q1(cols, s="legacy", t=table), "old shape of " + view)
        W.compat_eng = W.compat(MIG)
        with Session(W.compat_eng) as s:
            # the models reach the views, not the tables
            self.assertEqual(s.execute(text(WHERE_IS % "customers")).one(), (MIG + "_compat", "v"))
            self.assertEqual(s.execute(text(WHERE_IS % "ai_customers")).one(), (MIG + "_compat", "v"))
            self.assertEqual(s.execute(text(WHERE_IS % "bookings")).one(), ("legacy", "r"))
            got = [tuple(getattr(c, a.key) for a in inspect(LegacyCustomer).column_attrs)
                   for c in s.query(LegacyCustomer).order_by(LegacyCustomer.id)]
            self.assertEqual(got, base["legacy"])
            got = [tuple(getattr(c, a.key) for a in inspect(AICustomer).column_attrs)
                   for c in s.query(AICustomer).order_by(AICustomer.id)]
            self.assertEqual(got, base["ai"])
            self.assertEqual(s.get(LegacyCustomer, W.legacy_ids["ana"]).email, " ANA@Example.com ")
            # relationships still join through the views
            self.assertEqual(sorted(b.party_size for b in s.get(LegacyCustomer, W.legacy_ids["cy"]).bookings), [2, 3])
            self.assertEqual([c.id for c in s.get(AICustomer, ai_id(1)).conversations], [ai_id(901)])

    def test_09_writes_through_views_merge(self):
        """after cutover: inserts, updates and deletes through the views land and merge into core"""
        W = self.W
        with Session(W.compat_eng) as s, s.begin():
            oto = LegacyCustomer(first_name="Oto", last_name="Quin", email="OTO@example.com ", phone="415 555 0115",
                                 created_at=T0, updated_at=T0)
            s.add(oto)
            s.flush()
            self.assertIsInstance(oto.id, int)            # the old key, from the table's sequence
            s.add(LegacyBooking(customer_id=oto.id, booking_date=T0, party_size=3))
            cy = s.get(LegacyCustomer, W.legacy_ids["cy"])
            cy.phone = "415 555 0177"
            s.get(LegacyCustomer, W.legacy_ids["jo"]).first_name = "Jojo"   # Jo is an anchor: core keeps Jo
            s.delete(s.get(LegacyCustomer, W.legacy_ids["hal"]))
            s.add(AICustomer(id=ai_id(10), email="pia@example.com", name="Pia Ruiz", phone="4155550117"))
            s.get(AICustomer, ai_id(6)).phone = "415-555-0190"
        W.truth[("legacy", str(oto.id))] = "oto"
        W.email["oto"] = "oto@example.com"
        W.truth[("ai", ai_id(10))] = "pia"
        W.email["pia"] = "pia@example.com"
        del W.truth[("legacy", str(W.legacy_ids["hal"]))]
        del W.email["hal"]
        # the rows are in the tables under the views
        self.assertEqual(q1("SELECT email FROM legacy.customers WHERE id = :i", i=oto.id), "OTO@example.com ")
        self.assertEqual(q1("SELECT name FROM legacy.ai_customers WHERE id = :i", i=ai_id(10)), "Pia Ruiz")
        # and merged into core
        self.assertEqual(W.core_row("oto@example.com"), ("Oto", "Quin", "oto@example.com", "415 555 0115"))
        self.assertEqual(W.core_row("pia@example.com"), ("Pia", "Ruiz", "pia@example.com", "4155550117"))
        self.assertEqual(W.core_row("cy@example.com")[3], "415 555 0177")
        self.assertEqual(W.core_row("ivy@example.com")[3], "415-555-0190")
        self.assertEqual(W.core_row("jo@example.com")[0], "Jo")
        self.assertIsNone(W.core_row("hal@example.com"))
        # the core model keeps working alongside
        with Session(W.core_eng) as s, s.begin():
            s.get(Customer, core_id(2)).marketing_consent = True
        target = W.check_people(self, MIG, "after writes through the views")
        W.check_references(self, MIG, target)
        self.assertEqual(failing_checks(MIG), [])

    def test_10_finalize(self):
        """finalize: the views still work and merge; core sees everyone; references kept in the archive"""
        W = self.W
        self.assertEqual(q1("SELECT customer_unify.finalize(:n)", n=MIG), "finalized")
        self.assertIsNone(q1("SELECT to_regclass('legacy.customers')"))
        self.assertIsNone(q1("SELECT to_regclass('legacy.ai_customers')"))
        self.assertEqual(q1("SELECT to_regclass(:t)::text", t=MIG + "_archive.customers"), MIG + "_archive.customers")
        # the old reference columns are gone from the tables, the new ones stay
        cols = [r[0] for r in q("SELECT column_name FROM information_schema.columns WHERE table_schema = 'legacy' "
                                "AND table_name = 'bookings' ORDER BY ordinal_position")]
        self.assertNotIn("customer_id", cols)
        self.assertIn("customer_id_merged", cols)
        # so, by design (finalize drops the old reference columns), the old
        # Booking and Conversation models stop working: they must move to the
        # new columns before finalize
        with Session(W.legacy_eng) as s:
            with self.assertRaises(ProgrammingError):
                s.query(LegacyBooking).all()
        with Session(W.legacy_eng) as s:
            with self.assertRaises(ProgrammingError):
                s.query(Conversation).all()
        with Session(W.compat_eng) as s, s.begin():
            self.assertEqual(s.query(LegacyCustomer).count(), sum(t == "legacy" for t, _ in W.truth))
            self.assertEqual(s.query(AICustomer).count(), sum(t == "ai" for t, _ in W.truth))
            self.assertEqual(s.get(LegacyCustomer, W.legacy_ids["ana"]).email, " ANA@Example.com ")
            quy = LegacyCustomer(first_name="Quy", last_name="Tran", email="quy@example.com", phone="(415) 555-0118",
                                 created_at=T0, updated_at=T0)
            s.add(quy)
            s.query(LegacyCustomer).filter_by(email="OTO@example.com ").one().phone = "415 555 0155"
            s.add(AICustomer(id=ai_id(11), email="ray@example.com", name="Ray Sato", phone="415 555 0120"))
        W.truth[("legacy", str(quy.id))] = "quy"
        W.email["quy"] = "quy@example.com"
        W.truth[("ai", ai_id(11))] = "ray"
        W.email["ray"] = "ray@example.com"
        self.assertEqual(W.core_row("quy@example.com"), ("Quy", "Tran", "quy@example.com", "(415) 555-0118"))
        self.assertEqual(W.core_row("oto@example.com")[3], "415 555 0155")
        self.assertEqual(W.core_row("ray@example.com")[:2], ("Ray", "Sato"))
        target = W.check_people(self, MIG, "after finalize")
        self.assertEqual(len(target), 16)
        W.check_references(self, MIG, target, archived=True)
        with Session(W.core_eng) as s:
            self.assertEqual(s.query(Customer).count(), 16)


class RollbackAfterCutover(unittest.TestCase):
    """A second merge on fresh tables, with the applications writing while it
    is live and through the views, rolled back after cutover: every table is
    as it would be had the merge never run (the same writes applied to a
    shadow copy that was never merged), shape as before."""

    def writes(self, core_eng, legacy_eng, stage):
        """The same application writes, for the merged copy and the shadow."""
        if stage == "live":
            with Session(legacy_eng) as s, s.begin():
                s.add(LegacyCustomer(first_name="Lou", last_name="Ng", email="lou@example.com", phone="4155550112",
                                     created_at=T0, updated_at=T0))
                s.delete(s.query(LegacyCustomer).filter_by(email="ELI@example.com ").one())
                hal = s.query(LegacyCustomer).filter_by(email="hal@example.com").one()
                hal.phone, hal.updated_at = "415-555-0199", T1
                ai = s.get(AICustomer, ai_id(6))
                ai.name, ai.updated_at = "Ivy Jones-Park", T1
                s.add(Conversation(id=ai_id(950), customer_id=ai_id(6), created_at=T0))
            with Session(core_eng) as s, s.begin():
                s.add(Customer(id=core_id(50), first_name="Max", last_name="Pak", email="max@example.com",
                               phone="+14155550113", created_at=T0, updated_at=T0))
                fay = s.get(Customer, core_id(3))
                fay.phone, fay.updated_at = "+14155550116", T1
        else:   # through the views after cutover (the shadow: its tables)
            with Session(legacy_eng) as s, s.begin():
                s.add(LegacyCustomer(first_name="Oto", last_name="Quin", email="oto@example.com", phone="4155550115",
                                     created_at=T0, updated_at=T0))
                cy = s.query(LegacyCustomer).filter_by(email="cy@example.com").one()
                cy.phone, cy.updated_at = "415 555 0177", T1
                s.add(AICustomer(id=ai_id(60), email="pia@example.com", name="Pia Ruiz", phone="4155550117",
                                 created_at=T0, updated_at=T0))
                s.delete(s.get(AICustomer, ai_id(3)))

    def test_rollback_after_cutover(self):
        """rollback after cutover: tables exactly as without the merge, app writes kept"""
        merged = World("rbcore", "rblegacy", {"core": "rbcore"})
        shadow = World("shcore", "shlegacy", {"core": "shcore"})
        for w in (merged, shadow):
            w.create_schema()
            w.load()
        tables = ["customers", "bookings"], ["customers", "bookings", "ai_customers", "conversations"]

        def rowsets(w):
            return {t: rows_of('"%s".%s' % (w.core_schema, t)) for t in tables[0]} | \
                   {"legacy." + t: rows_of('"%s".%s' % (w.legacy_schema, t)) for t in tables[1]}
        before = shape(["rbcore", "rblegacy"])
        self.assertEqual(rowsets(merged), rowsets(shadow))
        self.assertGreater(plan(RB, "rbcore", "rblegacy"), 0)
        q("SELECT customer_unify.start(:n)", n=RB)
        q("CALL customer_unify.backfill(:n)", n=RB)
        self.assertEqual(state(RB), "backfilled")
        self.assertEqual(q1("SELECT count(*) FROM rbcore.customers"), 12)    # the merged rows are there
        for w in (merged, shadow):
            self.writes(w.core_eng, w.legacy_eng, "live")
        self.assertEqual(failing_checks(RB), [])
        self.assertEqual(q1("SELECT customer_unify.cutover(:n)", n=RB), "cut_over")
        self.writes(merged.core_eng, merged.compat(RB), "views")
        self.writes(shadow.core_eng, shadow.legacy_eng, "views")
        self.assertIsNotNone(merged.core_row("pia@example.com"))           # merged while cut over
        self.assertIsNotNone(merged.core_row("oto@example.com"))
        self.assertIsNone(shadow.core_row("pia@example.com"))
        self.assertNotEqual(rowsets(merged), rowsets(shadow))

        self.assertEqual(q1("SELECT customer_unify.rollback(:n)", n=RB), "rolled_back")
        self.assertEqual(state(RB), "rolled_back")
        got, want = rowsets(merged), rowsets(shadow)
        for t in want:
            self.assertEqual(got[t], want[t], "rows of %s after rollback" % t)
        self.assertEqual(shape(["rbcore", "rblegacy"]), before)
        self.assertEqual(q1("SELECT count(*) FROM pg_namespace WHERE nspname LIKE :p", p=RB + "\\_%"), 0)
        self.assertEqual(q1("SELECT count(*) FROM customer_unify.id_map WHERE migration_id = :m", m=mig_id(RB)), 0)
        # the applications work on their tables again
        with Session(merged.legacy_eng) as s:
            self.assertEqual(s.execute(text(WHERE_IS % "customers")).one(), ("rblegacy", "r"))
            self.assertEqual(s.query(LegacyCustomer).filter_by(email="oto@example.com").one().first_name, "Oto")


class KnownBugs(unittest.TestCase):
    """Behaviour the design promises, found missing by these tests.  The ones
    the extension has since gained run always (a NOT NULL refusal held for
    review, rollback after the core app referenced a merged row); the ones it
    still lacks are skipped unless CU_APP_KNOWN_BUGS=1 and say what to expect."""

    def test_not_null_target_column(self):
        """live: a legacy customer without the phone core requires is held for review, its insert succeeds"""
        w = World("nncore", "nnlegacy", {"core": "nncore"})
        w.create_schema()
        w.load()
        self.assertGreater(plan(NN, "nncore", "nnlegacy"), 0)
        q("SELECT customer_unify.start(:n)", n=NN)
        q("CALL customer_unify.backfill(:n)", n=NN)
        try:
            error = None
            try:
                with Session(w.legacy_eng) as s, s.begin():
                    # core.customers.phone is NOT NULL (the seed's Mapped[str]); the legacy model allows NULL
                    s.add(LegacyCustomer(first_name="Uma", last_name="Vance", email="uma@example.com", phone=None))
            except IntegrityError as e:
                error = str(e.orig).splitlines()[0]
            self.assertIsNone(error, "the legacy application's own INSERT failed while the merge is live")
            held = q1("SELECT count(*) FROM customer_unify.merge_held WHERE migration_id = :m", m=mig_id(NN))
            self.assertEqual(held, 1, "the cluster the target refused is held for review")
            self.assertIn("clusters held for review", [c[0] for c in failing_checks(NN)])
        finally:
            q("SELECT customer_unify.rollback(:n)", n=NN)

    @unittest.skipUnless(os.environ.get("CU_APP_KNOWN_BUGS") == "1",
                         "known bug: while live, the core app's INSERT of a person that only the legacy or AI "
                         "table had fails with 23505 (core.customers' unique email: the merge's row holds "
                         "it); before start the same INSERT succeeds")
    def test_core_insert_of_a_merged_person(self):
        """live: the core app inserts a person the merge made from legacy rows; the merged row folds into it"""
        w = World("uqcore", "uqlegacy", {"core": "uqcore"})
        w.create_schema()
        w.load()
        self.assertGreater(plan(UQ, "uqcore", "uqlegacy"), 0)
        q("SELECT customer_unify.start(:n)", n=UQ)
        q("CALL customer_unify.backfill(:n)", n=UQ)
        try:
            self.assertIsNotNone(w.core_row("cy@example.com"))          # Cy: legacy + AI rows, merged
            error = None
            try:
                with Session(w.core_eng) as s, s.begin():
                    # a core app that inserts without looking first (no get-or-create)
                    s.add(Customer(id=core_id(77), first_name="Cy", last_name="Diaz", email="cy@example.com",
                                   phone="+14155550103"))
            except IntegrityError as e:
                error = str(e.orig).splitlines()[0]
            self.assertIsNone(error, "the core application's own INSERT failed while the merge is live")
            w.truth[("target", str(core_id(77)))] = "cy"
            w.check_people(self, UQ, "after the core app's insert of Cy")
            self.assertEqual(failing_checks(UQ), [])
        finally:
            q("SELECT customer_unify.rollback(:n)", n=UQ)

    def test_rollback_after_core_references_a_merged_row(self):
        """live: the core app books for a person the merge made; rollback still works and keeps the booking valid"""
        w = World("rfcore", "rflegacy", {"core": "rfcore"})
        w.create_schema()
        w.load()
        self.assertGreater(plan(RF, "rfcore", "rflegacy"), 0)
        q("SELECT customer_unify.start(:n)", n=RF)
        q("CALL customer_unify.backfill(:n)", n=RF)
        try:
            with Session(w.core_eng) as s, s.begin():
                cy = s.query(Customer).filter_by(email="cy@example.com").one()     # a merged row (legacy + AI)
                s.add(Booking(id=core_id(300), customer_id=cy.id, event_date=T0, total_cents=4200))
            error = None
            try:
                q("SELECT customer_unify.rollback(:n)", n=RF)
            except Exception as e:
                error = str(getattr(e, "orig", e)).splitlines()[0]
            self.assertIsNone(error, "rollback() of a merge before finalize failed")
            self.assertEqual(state(RF), "rolled_back")
            self.assertEqual(q1("SELECT count(*) FROM pg_namespace WHERE nspname LIKE :p", p=RF + "\\_%"), 0)
            self.assertEqual(q1("SELECT count(*) FROM rfcore.bookings b JOIN rfcore.customers c ON c.id = b.customer_id "
                                "WHERE b.id = :b", b=core_id(300)), 1)
        finally:
            if state(RF) in LIVE_STATES:
                q("DELETE FROM rfcore.bookings WHERE id = :b", b=core_id(300))
                q("SELECT customer_unify.rollback(:n)", n=RF)


# --------------------------------------------------------------- runner
class LineResult(unittest.TestResult):
    """One line per test case (the app tier of test/run counts them)."""

    def __init__(self, stream):
        super().__init__()
        self.stream, self.n, self.passed, self.failed_n, self.skipped_n, self.t = stream, 0, 0, 0, 0, 0

    def _name(self, test):
        doc = (test.shortDescription() or "").strip()
        return "%s.%s%s" % (type(test).__name__, test._testMethodName, (": " + doc) if doc else "")

    def startTest(self, test):
        super().startTest(test)
        self.t = time.monotonic()

    def _line(self, status, test, extra=""):
        self.n += 1
        ms = (time.monotonic() - self.t) * 1000
        self.stream.write("%s %d - %s (%.0f ms)%s\n" % (status, self.n, self._name(test), ms, extra))
        self.stream.flush()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line("ok", test)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.skipped_n += 1
        self._line("ok", test, " # SKIP " + reason)

    def _bad(self, test, err):
        self.failed_n += 1
        self._line("not ok", test)
        for line in "".join(traceback.format_exception(*err)).rstrip().splitlines():
            self.stream.write("#   %s\n" % line)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._bad(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self._bad(test, err)


def suite(names=None):
    loader = unittest.TestLoader()
    if names:
        return loader.loadTestsFromNames(names, sys.modules[__name__])
    s = unittest.TestSuite()
    for cls in (Seed004Merge, RollbackAfterCutover, KnownBugs):
        s.addTests(loader.loadTestsFromTestCase(cls))
    return s


def main():
    t0 = time.monotonic()
    result = LineResult(sys.stdout)
    try:
        cleanup()
    except Exception as e:
        print("not ok 1 - setup: connect, create the extension, clean up (%s)" % str(e).splitlines()[0])
        print("# app: 0 passed (0 of them skipped), 1 failed")
        return 1
    print("# app tier: merge %s, server %s, database %s" % (
        MIG, q1("SELECT current_setting('server_version')"), q1("SELECT current_database()")))
    suite(sys.argv[1:]).run(result)
    print("# app: %d passed (%d of them skipped), %d failed (%.1f s)" % (
        result.passed + result.skipped_n, result.skipped_n, result.failed_n, time.monotonic() - t0))
    return 0 if result.failed_n == 0 and result.n > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
