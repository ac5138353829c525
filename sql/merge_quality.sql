-- merge_quality: the merge operation itself, with the documented rule set
-- "febrl-v1" (the passes sql/match_quality.sql scores with the matcher's
-- primitives) written as a merge spec, on the FEBRL ground truth
-- (test/data/febrl/): dataset3 deduplicated into a new table, and dataset4a
-- + dataset4b linked (two sources, one target).  Scored as pairwise
-- precision, recall and F1 of the clusters the crosswalk holds against the
-- records' true person (rec-N-...).  Bars: F1 >= 0.97 on both (Splink
-- publishes 0.965 on dataset3).
SET client_min_messages = warning;
CREATE SCHEMA mq;
CREATE TABLE mq.raw (line bigint GENERATED ALWAYS AS IDENTITY, rec_id text, given_name text, surname text,
    street_number text, address_1 text, address_2 text, suburb text, postcode text, state text,
    date_of_birth text, soc_sec_id text);
CREATE FUNCTION mq.load(p_table text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE n bigint;
BEGIN
    EXECUTE format('CREATE TABLE mq.%I (id bigint PRIMARY KEY, rec_id text NOT NULL, truth int NOT NULL, given_name text, surname text, '
                   'street_number text, address_1 text, suburb text, postcode text, date_of_birth text, soc_sec_id text)', p_table);
    EXECUTE format('INSERT INTO mq.%I SELECT line, btrim(rec_id), split_part(btrim(rec_id), ''-'', 2)::int, '
                   'nullif(btrim(given_name), ''''), nullif(btrim(surname), ''''), nullif(btrim(street_number), ''''), '
                   'nullif(btrim(address_1), ''''), nullif(btrim(suburb), ''''), nullif(btrim(postcode), ''''), '
                   'nullif(btrim(date_of_birth), ''''), nullif(btrim(soc_sec_id), '''') FROM mq.raw', p_table);
    GET DIAGNOSTICS n = ROW_COUNT;
    TRUNCATE mq.raw RESTART IDENTITY;
    RETURN n;
END $$;
\copy mq.raw (rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id) FROM 'test/data/febrl/dataset3.csv' WITH (FORMAT csv, HEADER)
SELECT mq.load('d3') AS d3_rows;
\copy mq.raw (rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id) FROM 'test/data/febrl/dataset4a.csv' WITH (FORMAT csv, HEADER)
SELECT mq.load('d4a') AS d4a_rows;
\copy mq.raw (rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id) FROM 'test/data/febrl/dataset4b.csv' WITH (FORMAT csv, HEADER)
SELECT mq.load('d4b') AS d4b_rows;

-- The rule set febrl-v1 as merge rules: one exact key and four blocks with a
-- score (the same weighted mean of Jaro-Winkler and equalities as in
-- sql/match_quality.sql, over the two rows a and b in the target's shape).
CREATE TEMP TABLE febrl_rules AS SELECT $json$ [
  {"rule": "exact_ssn_dob", "key": "soc_sec_id || '|' || date_of_birth"},
  {"rule": "ssn", "key": "soc_sec_id", "max_rows": 1000, "threshold": 0.55, "score": "SCORE"},
  {"rule": "dob", "key": "date_of_birth", "max_rows": 1000, "threshold": 0.55, "score": "SCORE"},
  {"rule": "postcode_sur2", "key": "postcode || '|' || nullif(btrim(left(surname, 2)), '')", "max_rows": 1000, "threshold": 0.55, "score": "SCORE"},
  {"rule": "name3", "key": "nullif(btrim(left(given_name, 3)), '') || '|' || nullif(btrim(left(surname, 3)), '')", "max_rows": 1000, "threshold": 0.55, "score": "SCORE"}
] $json$::text AS r;
UPDATE febrl_rules SET r = replace(r, 'SCORE',
    '(greatest(coalesce(customer_unify.jaro_winkler(a.given_name, b.given_name), 0.5) + coalesce(customer_unify.jaro_winkler(a.surname, b.surname), 0.5), '
    'coalesce(customer_unify.jaro_winkler(a.given_name, b.surname), 0.5) + coalesce(customer_unify.jaro_winkler(a.surname, b.given_name), 0.5)) '
    '+ 1.0 * coalesce(customer_unify.jaro_winkler(a.address_1, b.address_1), 0.5) + 0.5 * coalesce(customer_unify.jaro_winkler(a.suburb, b.suburb), 0.5) '
    '+ 1.5 * coalesce((a.date_of_birth = b.date_of_birth)::int, 0.5) + 1.5 * coalesce((a.soc_sec_id = b.soc_sec_id)::int, 0.5) '
    '+ 1.0 * coalesce((a.postcode = b.postcode)::int, 0.5) + 0.5 * coalesce((a.street_number = b.street_number)::int, 0.5)) / 8.0');
CREATE TEMP TABLE febrl_target AS SELECT '{"given_name": "text", "surname": "text", "street_number": "text", "address_1": "text",
    "suburb": "text", "postcode": "text", "date_of_birth": "text", "soc_sec_id": "text"}'::jsonb AS c;
CREATE TEMP TABLE febrl_columns AS SELECT '{"given_name": "given_name", "surname": "surname", "street_number": "street_number",
    "address_1": "address_1", "suburb": "suburb", "postcode": "postcode", "date_of_birth": "date_of_birth",
    "soc_sec_id": "soc_sec_id"}'::jsonb AS c;

-- dataset3: one source, deduplicated into mq.people3
SELECT customer_unify.merge('fq3', jsonb_build_object(
    'target', jsonb_build_object('table', 'mq.people3', 'create', true, 'key', 'id', 'key_type', 'bigint',
                                 'columns', (SELECT c FROM febrl_target)),
    'sources', jsonb_build_array(jsonb_build_object('table', 'mq.d3', 'tag', 'd3', 'columns', (SELECT c FROM febrl_columns))),
    'match', (SELECT r::jsonb FROM febrl_rules))) > 0 AS planned;
SELECT customer_unify.start('fq3');
CALL customer_unify.backfill('fq3', batch_size => 1000);
SELECT check_name, expected, actual FROM customer_unify.verify('fq3') WHERE NOT ok;
-- pairwise scores: predicted pairs are pairs of records in one cluster
CREATE FUNCTION mq.score(p_migration text, p_cross boolean)
    RETURNS TABLE (predicted bigint, true_positive bigint, truth bigint, prec numeric, recall numeric, f1 numeric)
    LANGUAGE sql AS $$
    WITH rec AS (
        SELECT im.source_tag, im.old_key, im.target_key,
               coalesce(d3.truth, a.truth, b.truth) AS truth
          FROM customer_unify.id_map im
          JOIN customer_unify.migration m ON m.id = im.migration_id AND m.name = p_migration
          LEFT JOIN mq.d3 d3 ON im.source_tag = 'd3' AND d3.id::text = im.old_key
          LEFT JOIN mq.d4a a ON im.source_tag = 'd4a' AND a.id::text = im.old_key
          LEFT JOIN mq.d4b b ON im.source_tag = 'd4b' AND b.id::text = im.old_key
    ), pairs AS (
        SELECT count(*) AS predicted, count(*) FILTER (WHERE x.truth = y.truth) AS tp
          FROM rec x JOIN rec y ON y.target_key = x.target_key AND (x.source_tag, x.old_key) < (y.source_tag, y.old_key)
         WHERE NOT p_cross OR x.source_tag <> y.source_tag
    ), truth AS (
        SELECT count(*) AS n FROM rec x JOIN rec y ON y.truth = x.truth AND (x.source_tag, x.old_key) < (y.source_tag, y.old_key)
         WHERE NOT p_cross OR x.source_tag <> y.source_tag
    )
    SELECT p.predicted, p.tp, t.n, round(p.tp::numeric / p.predicted, 4), round(p.tp::numeric / t.n, 4),
           round(2.0 * p.tp / (p.predicted + t.n), 4)
      FROM pairs p, truth t
$$;
SELECT *, prec >= 0.97 AS precision_ok, recall >= 0.97 AS recall_ok, f1 >= 0.97 AS f1_ok FROM mq.score('fq3', false);
SELECT count(*) AS people3 FROM mq.people3;

-- dataset4a + dataset4b: two sources linked into mq.people4, scored on the pairs across them
SELECT customer_unify.merge('fq4', jsonb_build_object(
    'target', jsonb_build_object('table', 'mq.people4', 'create', true, 'key', 'id', 'key_type', 'bigint',
                                 'columns', (SELECT c FROM febrl_target)),
    'sources', jsonb_build_array(jsonb_build_object('table', 'mq.d4a', 'tag', 'd4a', 'columns', (SELECT c FROM febrl_columns)),
                                 jsonb_build_object('table', 'mq.d4b', 'tag', 'd4b', 'columns', (SELECT c FROM febrl_columns))),
    'match', (SELECT r::jsonb FROM febrl_rules))) > 0 AS planned;
SELECT customer_unify.start('fq4');
CALL customer_unify.backfill('fq4', batch_size => 1000);
SELECT check_name, expected, actual FROM customer_unify.verify('fq4') WHERE NOT ok;
SELECT *, prec >= 0.97 AS precision_ok, recall >= 0.97 AS recall_ok, f1 >= 0.97 AS f1_ok FROM mq.score('fq4', true);
SELECT count(*) AS people4 FROM mq.people4;
SELECT customer_unify.rollback('fq3'), customer_unify.rollback('fq4');
DROP SCHEMA mq CASCADE;
