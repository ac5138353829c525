-- The normalizers (src/normalize.c, src/phone.cpp): match keys of e-mail
-- addresses and phone numbers, split_name / join_name, their versions,
-- expression indexes on them, and their errors with SQLSTATEs.
--
-- The keys depend on the database encoding (IDNA needs UTF8), so the test
-- makes its own databases whatever the cluster's: a UTF8 one for most of
-- it, then LATIN1 and SQL_ASCII ones for the other-encoding paths.
SET client_min_messages = warning;
SELECT current_database() AS main_db \gset
DROP DATABASE IF EXISTS regression_cu_norm_utf8;
DROP DATABASE IF EXISTS regression_cu_norm_latin1;
DROP DATABASE IF EXISTS regression_cu_norm_ascii;
CREATE DATABASE regression_cu_norm_utf8 TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C';
CREATE DATABASE regression_cu_norm_latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
CREATE DATABASE regression_cu_norm_ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C';

\c regression_cu_norm_utf8
SET client_min_messages = warning;
CREATE EXTENSION customer_unify;
SET search_path = public, customer_unify;
-- runs a statement: 'ok', or its SQLSTATE and message (try_detail: and detail and hint)
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
CREATE FUNCTION pg_temp.try_detail(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_state text; v_msg text; v_detail text; v_hint text;
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
                            v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
    RETURN v_state || ': ' || v_msg || coalesce(E'\nDETAIL: ' || nullif(v_detail, ''), '')
                   || coalesce(E'\nHINT: ' || nullif(v_hint, ''), '');
END
$$;
SELECT getdatabaseencoding();

-- declarations: immutable, strict, parallel safe, except join_name (not
-- strict) and normalizer_version (stable: a library upgrade changes it)
SELECT p.oid::regprocedure AS function, p.provolatile AS volatile, p.proisstrict AS strict,
       p.proparallel AS parallel, p.prorettype::regtype AS returns
  FROM pg_proc p
 WHERE p.pronamespace = 'customer_unify'::regnamespace
   AND p.proname IN ('normalize_email', 'normalize_email_provider', 'normalize_phone',
                     'split_name', 'join_name', 'normalizer_version')
 ORDER BY p.oid::regprocedure::text;
SELECT attname, atttypid::regtype FROM pg_attribute
 WHERE attrelid = 'customer_unify.person_name'::regclass AND attnum > 0 ORDER BY attnum;

------------------------------------------------------------------ e-mail
-- the key of an address: trimmed, ASCII letters lower-cased, the domain in
-- IDNA ASCII form; a rewrite never: NULL for what is not an address
-- (inputs as JSON strings, to show white space; long ones cut)
SELECT to_json(left(x, 40)) AS input, octet_length(x) AS bytes, normalize_email(x) AS key
  FROM (VALUES ('John.Doe@Example.COM'),
               ('  john.doe@example.com  '),
               (E'\tjohn.doe@EXAMPLE.com\n'),
               (E'\u00a0john.doe@example.com\u3000'),      -- no-break and ideographic spaces around
               ('noreply@x.com'),                          -- placeholders are the matcher's business
               ('o''brien+news@example.co.uk'),
               ('a!#$%&''*+-/=?^_`{|}~z@example.org'),     -- every atext character
               (repeat('a', 64) || '@example.com'),        -- local part of 64 bytes
               ('user@sub.Domain-Name.example'),
               ('user@ab--cd.example'),                    -- ASCII labels are only checked as host names
               ('user@123.example'),
               ('user@example.123x')) v(x);
-- non-ASCII: the local part keeps it as typed (only A-Z are lowered: no
-- Unicode case folding, which merged "ı" and "i" into one Django account,
-- CVE-2019-19844); the domain takes its IDNA (UTS #46) form, in which
-- case does not matter but look-alike letters stay different domains
SELECT x AS input, normalize_email(x) AS key
  FROM (VALUES ('Müller@Bücher.de'),
               ('MÜLLER@BÜCHER.DE'),
               ('müller@xn--bcher-kva.de'),
               ('müller@XN--BCHER-KVA.DE'),
               ('Straße@example.de'),                      -- ß stays ß
               ('STRASSE@example.de'),
               ('straße@faß.de'),                          -- IDNA2008: faß.de is not fass.de
               ('straße@fass.de'),
               ('İnci@example.com'),                       -- Turkish dotted capital I stays
               ('inci@example.com'),
               ('ınci@example.com'),                       -- dotless i stays
               ('Іvan@example.com'),                       -- Cyrillic І (U+0406) is not I
               ('Ivan@example.com'),
               ('info@пример.рф'),
               ('INFO@ПРИМЕР.РФ'),
               ('info@еxample.com'),                       -- Cyrillic е in the domain: another domain
               ('info@例え.テスト'),
               ('info@例え。テスト')) v(x);                -- ideographic full stop: a dot in IDNA
-- not addresses: NULL
SELECT to_json(left(x, 40)) AS input, octet_length(x) AS bytes, normalize_email(x) AS key
  FROM (VALUES (''), (' '), (E'\t\n'),
               ('no-at-sign'), ('a@@b.com'), ('a@b@c.com'), ('@example.com'), ('user@'), ('@'),
               ('a@b'),                                    -- no dot in the domain
               ('john doe@example.com'), ('john@exa mple.com'), (E'john\u00a0doe@example.com'),
               ('"john doe"@example.com'),                 -- quoted local parts: not matched on
               ('<john@example.com>'), ('mailto:john@example.com'), ('John <john@example.com>'),
               ('.john@example.com'), ('john.@example.com'), ('john..doe@example.com'),
               (repeat('a', 65) || '@example.com'),        -- local part over 64 bytes
               ('john@[192.0.2.1]'), ('john@192.0.2.1'),
               ('john@-example.com'), ('john@example-.com'), ('john@example..com'), ('john@.example.com'),
               ('john@example.com.'), ('john@exa_mple.com'), ('john@example.c%m'),
               ('john@' || repeat('a', 64) || '.com'),     -- a label over 63 bytes
               ('john@' || repeat('abcdefghi.', 26) || 'com'),  -- a domain over 253 bytes
               ('john@xn--zzzz.de'),                       -- invalid A-label (punycode)
               ('john@xn--a.com'),
               ('john@ab--cd.bücher.de'),                  -- IDNA refuses -- in positions 3-4
               (E'john@exa\x01mple.com')) v(x);
-- keys are keys: normalizing a key gives it back
SELECT count(*) AS addresses, count(*) FILTER (WHERE normalize_email(k) = k) AS stable
  FROM (SELECT normalize_email(x) AS k
          FROM (VALUES ('John.Doe@Example.COM'), ('Müller@Bücher.de'), ('INFO@ПРИМЕР.РФ'),
                       ('straße@faß.de'), ('İnci@example.com'), ('info@例え。テスト')) v(x)) s;

-- the provider rule, weaker: what Gmail (and +tag providers) deliver to one mailbox
SELECT x AS input, normalize_email(x) AS key, normalize_email_provider(x) AS provider_key
  FROM (VALUES ('John.Doe+News@GoogleMail.com'),
               ('johndoe@gmail.com'),
               ('j.o.h.n.d.o.e@Gmail.COM'),
               ('john.doe+a+b@gmail.com'),
               ('john.doe@example.com'),                   -- dots count everywhere else
               ('john.doe+news@example.com'),
               ('john+@example.com'),
               ('+tag@example.com'),                       -- a local part starting with +: no tag
               ('Ünïcödé+x@example.com'),
               ('john@mail.gmail.com'),                    -- only gmail.com and googlemail.com
               ('john@gmail.com.evil.example'),
               ('not an address')) v(x);

------------------------------------------------------------------ phones
-- E.164 through libphonenumber, in the default region's national formats
-- and international ones
SELECT x AS input, r AS region, normalize_phone(x, r) AS e164
  FROM (VALUES ('(415) 555-0100', 'US'),
               ('415.555.0100', 'US'),
               ('415 555 0100', 'us'),                     -- region codes in any case
               ('1-415-555-0100', 'US'),
               ('+1 (415) 555-0100', 'US'),
               ('  +1 415 555 0100  ', 'GB'),              -- international form: region unused
               ('011 44 20 7946 0958', 'US'),              -- US international prefix
               ('0044 20 7946 0958', 'US'),                -- 00 is not one in the US
               ('415-555-0100 ext. 12', 'US'),             -- extensions are dropped
               ('(415) 555-0100 x12', 'US'),
               ('1-800-FLOWERS', 'US'),                    -- letters of a keypad
               ('Tel: +1 415 555 0100', 'US'),
               ('４１５５５５０１００', 'US'),             -- full-width digits
               ('+1 123 456 7890', 'US'),                  -- possible (length), though not valid
               ('020 7946 0958', 'GB'),
               ('+44 (0)20 7946 0958', 'GB'),
               ('0044 20 7946 0958', 'GB'),
               ('00 44 20 7946 0958', 'GB'),
               ('07700 900123', 'GB'),                     -- Ofcom's drama range: possible, not valid
               ('030 123456', 'DE'),
               ('(030) 12345678', 'DE'),
               ('0049 30 1234567', 'DE'),
               ('+49 171 1234567', 'DE'),
               ('0171 1234567', 'DE'),
               ('(02) 9876 5432', 'AU'),
               ('0412 345 678', 'AU'),
               ('+61 412 345 678', 'AU'),
               ('0011 61 2 9876 5432', 'AU')) v(x, r);
-- not numbers, or not possible ones: NULL
SELECT x AS input, r AS region, normalize_phone(x, r) AS e164
  FROM (VALUES ('', 'US'), (' ', 'US'), ('call me', 'US'), ('n/a', 'US'), ('-', 'US'), ('+', 'US'),
               ('12', 'US'), ('555-0100', 'US'),           -- local only: no area code
               ('415 555 01000 0000', 'US'),               -- too long
               ('+999 1234 5678', 'US'),                   -- no such country code
               ('4155550100', ''),                         -- national form without a region
               ('0044 20 7946 0958', '')) v(x, r);
-- without a default region only the international form parses: the
-- one-argument form, or an empty region (the two-argument form is STRICT:
-- a NULL region gives NULL)
SELECT normalize_phone('+1 415 555 0100') AS intl, normalize_phone('415 555 0100') AS national,
       normalize_phone('+1 415 555 0100', '') AS empty_region, normalize_phone('+1 415 555 0100', ' ') AS blank_region,
       normalize_phone('+1 415 555 0100', NULL) AS null_region;
-- an unknown region is the caller's error, not the data's
SELECT pg_temp.try_detail($$SELECT customer_unify.normalize_phone('+1 415 555 0100', 'XX')$$);
SELECT r AS region, pg_temp.try(format('SELECT customer_unify.normalize_phone(%L, %L)', '+1 415 555 0100', r)) AS result
  FROM (VALUES ('usa'), ('ZZ'), ('001'), ('U1'), ('1'), ('United States')) v(r);
-- the region is checked even when no row needs it
SELECT pg_temp.try($$SELECT customer_unify.normalize_phone('', 'XX')$$);
-- keys are keys
SELECT count(*) AS numbers, count(*) FILTER (WHERE normalize_phone(k) = k AND normalize_phone(k, 'DE') = k) AS stable
  FROM (SELECT normalize_phone(x, 'US') AS k
          FROM (VALUES ('(415) 555-0100'), ('+44 20 7946 0958'), ('+49 30 123456'), ('+61 412 345 678')) v(x)) s;

------------------------------------------------------------------ names
SELECT x AS input, (split_name(x)).*
  FROM (VALUES ('Ludwig van Beethoven'),
               ('José María Pérez'),                       -- first word is the first name
               ('Zoë O''Brien'),
               ('  Zoë    O''Brien  '),                     -- trimmed and collapsed
               (E'Zoë\u00a0O''Brien'),                     -- no-break space is white space
               ('Mary Anne Smith-Jones'),
               ('Cher'),                                   -- one word: a first name
               ('Beethoven, Ludwig van'),                  -- "Last, First"
               ('Pérez,José María'),
               ('Smith,'),
               (', John'),
               ('de la Cruz'),                             -- a particle first: all last name
               ('Vincent van Gogh'),
               ('Van Morrison'),                           -- particles are lower-case only
               ('Ahmad bin Said'),
               ('Ana dos Santos'),
               ('Леонид Ильич Брежнев'),
               ('王 小明'),
               (''),
               ('   ')) v(x);
-- join_name: trims both, one space, NULL when both are blank; not strict
SELECT f AS first_name, l AS last_name, join_name(f, l)
  FROM (VALUES ('Ludwig', 'van Beethoven'), ('  Zoë ', ' O''Brien  '), ('Cher', NULL), (NULL, 'Smith'),
               ('', 'Smith'), ('Cher', '  '), (NULL, NULL), ('', ' ')) v(f, l);
-- join_name(split_name(x)) gives x back, white space collapsed, for names without a comma
SELECT x AS input, join_name(split_name(x)) AS joined,
       join_name(split_name(x)) = regexp_replace(btrim(x), '\s+', ' ', 'g') AS round_trip
  FROM (VALUES ('Ludwig van Beethoven'), ('José María Pérez'), ('Zoë O''Brien'), ('  Cher '),
               ('de la Cruz'), ('Mary   Anne Smith-Jones'), ('Леонид Ильич Брежнев')) v(x);
SELECT join_name(split_name('Beethoven, Ludwig van')) AS comma_form_joined;

------------------------------------------------------------------ NULLs
SELECT normalize_email(NULL) IS NULL AS email, normalize_email_provider(NULL) IS NULL AS provider,
       normalize_phone(NULL, 'US') IS NULL AS phone, normalize_phone('+14155550100', NULL) IS NULL AS phone_null_region,
       normalize_phone(NULL) IS NULL AS phone_intl, split_name(NULL) IS NULL AS split,
       join_name(NULL::customer_unify.person_name) IS NULL AS join_row, normalizer_version(NULL) IS NULL AS version;

------------------------------------------------------------------ versions
SELECT n AS normalizer, normalizer_version(n) ~ ('^' || n || '/[0-9]+( lib[a-z0-9]+/[^ ]+)?$') AS well_formed,
       regexp_replace(normalizer_version(n), ' .*', '') AS rules, substring(normalizer_version(n) from ' (lib[a-z0-9]+)/') AS library
  FROM (VALUES ('normalize_email'), ('normalize_email_provider'), ('normalize_phone'), ('split_name')) v(n);
SELECT pg_temp.try($$SELECT customer_unify.normalizer_version('normalize_name')$$);
SELECT pg_temp.try($$SELECT customer_unify.normalizer_version('')$$);

------------------------------------------------------------------ expression indexes
CREATE TABLE people (id int PRIMARY KEY, email text, phone text, full_name text, first_name text, last_name text);
INSERT INTO people
SELECT g, format('User%s.Name+%s@%s', g, g % 7, (ARRAY['Example.com', 'GMail.com', 'Bücher.de'])[g % 3 + 1]),
       format('(%s) 555-%s', 200 + g % 700, lpad((g % 10000)::text, 4, '0')),
       format('First%s %sLast%s', g, CASE WHEN g % 5 = 0 THEN 'van ' ELSE '' END, g),
       'First' || g, 'Last' || g
  FROM generate_series(1, 3000) g;
INSERT INTO people VALUES (5001, ' John.Doe@Example.COM ', '+1 415 555 0100', 'Ludwig van Beethoven', 'Ludwig', 'van Beethoven'),
                          (5002, 'john.doe+crm@example.com', '(415) 555-0100', 'Beethoven, Ludwig van', ' Ludwig ', 'van Beethoven'),
                          (5003, 'Müller@BÜCHER.de', '+44 20 7946 0958', 'Zoë O''Brien', 'Zoë', 'O''Brien'),
                          (5004, 'not an address', 'call me', '', NULL, NULL);
CREATE INDEX people_email ON people (customer_unify.normalize_email(email));
CREATE INDEX people_email_provider ON people (customer_unify.normalize_email_provider(email));
CREATE INDEX people_phone ON people (customer_unify.normalize_phone(phone, 'US'));
CREATE INDEX people_phone_intl ON people (customer_unify.normalize_phone(phone));
CREATE INDEX people_last_name ON people (((customer_unify.split_name(full_name)).last_name));
CREATE INDEX people_joined ON people (customer_unify.join_name(first_name, last_name));
-- a STABLE function cannot be in an index
SELECT pg_temp.try($$CREATE INDEX people_bad ON people (customer_unify.normalizer_version(email))$$);
ANALYZE people;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE normalize_email(email) = normalize_email('JOHN.DOE@example.com');
SELECT id FROM people WHERE normalize_email(email) = normalize_email('JOHN.DOE@example.com') ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE normalize_email_provider(email) = 'john.doe@example.com';
SELECT id FROM people WHERE normalize_email_provider(email) = 'john.doe@example.com' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE normalize_phone(phone, 'US') = '+14155550100';
SELECT id FROM people WHERE normalize_phone(phone, 'US') = '+14155550100' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE normalize_phone(phone) = '+442079460958';
SELECT id FROM people WHERE normalize_phone(phone) = '+442079460958' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE (split_name(full_name)).last_name = 'van Beethoven';
SELECT id FROM people WHERE (split_name(full_name)).last_name = 'van Beethoven' ORDER BY id;
EXPLAIN (COSTS OFF) SELECT id FROM people WHERE join_name(first_name, last_name) = 'Ludwig van Beethoven';
SELECT id FROM people WHERE join_name(first_name, last_name) = 'Ludwig van Beethoven' ORDER BY id;
RESET enable_seqscan;
-- every generated row has its keys; the one that is no address has none
SELECT count(normalize_email(email)) AS emails, count(normalize_email_provider(email)) AS provider_keys,
       count(normalize_phone(phone, 'US')) AS phones, count((split_name(full_name)).first_name) AS first_names,
       count(DISTINCT normalize_email(email)) AS distinct_emails, count(DISTINCT normalize_email_provider(email)) AS distinct_provider_keys
  FROM people;
-- in parallel workers too (PARALLEL SAFE)
SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (COSTS OFF) SELECT count(normalize_phone(phone, 'US')) FROM people;
SELECT count(normalize_phone(phone, 'US')), count(normalize_email(email)), count(split_name(full_name)) FROM people;
RESET parallel_setup_cost; RESET parallel_tuple_cost; RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;

------------------------------------------------------------------ other encodings
-- LATIN1: only ASCII domains; the local part as typed; phones converted to
-- UTF-8 for libphonenumber; only ASCII white space
\c regression_cu_norm_latin1
SET client_min_messages = warning;
SET client_encoding = 'UTF8';
CREATE EXTENSION customer_unify;
SET search_path = public, customer_unify;
SELECT getdatabaseencoding();
SELECT x AS input, normalize_email(x) AS key
  FROM (VALUES ('Müller@Example.COM'), ('müller@Bücher.de'), ('müller@xn--bcher-kva.de'), ('a@b')) v(x);
SELECT normalize_phone('Tél: 01 23 45 67 89', 'FR') AS fr, normalize_phone('+1 415 555 0100') AS us;
SELECT x AS input, (split_name(x)).*
  FROM (VALUES ('José María Pérez'), ('  Zoë   O''Brien '), (E'Zoë\u00a0O''Brien')) v(x);
SELECT join_name(' Zoë ', 'O''Brien ');
-- SQL_ASCII: bytes as they are; a phone's must be UTF-8
\c regression_cu_norm_ascii
SET client_min_messages = warning;
CREATE EXTENSION customer_unify;
SET search_path = public, customer_unify;
SELECT getdatabaseencoding();
SELECT normalize_email('John@Example.COM') AS ascii_domain, normalize_email(E'john@b\xc3\xbccher.de') IS NULL AS idn_refused;
SELECT normalize_phone(E'\xef\xbc\x94\xef\xbc\x91\xef\xbc\x95 555 0100', 'US') AS utf8_digits,
       normalize_phone(E'\xff 415 555 0100', 'US') IS NULL AS not_utf8;

\c :main_db
SET client_min_messages = warning;
DROP DATABASE regression_cu_norm_utf8 WITH (FORCE);
DROP DATABASE regression_cu_norm_latin1 WITH (FORCE);
DROP DATABASE regression_cu_norm_ascii WITH (FORCE);
