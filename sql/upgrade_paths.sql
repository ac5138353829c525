-- Upgrade-path harness (in the manner of pg_hint_plan's oldextversions):
-- every version installs from its own script, and every ALTER EXTENSION
-- ... UPDATE path that exists ends with the same objects as a fresh install
-- of the default version. Later releases extend this automatically by
-- adding customer_unify--A--B.sql scripts.
SET client_min_messages = warning;
DROP EXTENSION customer_unify CASCADE;
CREATE FUNCTION pg_temp.objects() RETURNS SETOF text LANGUAGE sql AS $$
    SELECT pg_describe_object(classid, objid, objsubid)
      FROM pg_depend
     WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
       AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'customer_unify')
     ORDER BY 1
$$;
SELECT default_version FROM pg_available_extensions WHERE name = 'customer_unify';
SELECT version FROM pg_available_extension_versions WHERE name = 'customer_unify' ORDER BY version;
-- the fresh install of the default version is the reference
CREATE EXTENSION customer_unify;
CREATE TEMP TABLE reference AS SELECT * FROM pg_temp.objects() o;
SELECT count(*) > 20 AS has_objects FROM reference;
DROP EXTENSION customer_unify;
-- every version installs from its script
DO $$
DECLARE v text;
BEGIN
    FOR v IN SELECT version FROM pg_available_extension_versions WHERE name = 'customer_unify' ORDER BY version LOOP
        EXECUTE format('CREATE EXTENSION customer_unify VERSION %L', v);
        RAISE WARNING 'installed %', v;
        EXECUTE 'DROP EXTENSION customer_unify';
    END LOOP;
END
$$;
-- every update path to the default version ends where a fresh install does
DO $$
DECLARE p record; missing int; extra int;
BEGIN
    FOR p IN
        SELECT u.source, u.target, u.path
          FROM pg_extension_update_paths('customer_unify') u
         WHERE u.path IS NOT NULL
           AND u.target = (SELECT default_version FROM pg_available_extensions WHERE name = 'customer_unify')
         ORDER BY u.source
    LOOP
        EXECUTE format('CREATE EXTENSION customer_unify VERSION %L', p.source);
        EXECUTE format('ALTER EXTENSION customer_unify UPDATE TO %L', p.target);
        SELECT count(*) INTO missing FROM (SELECT * FROM reference EXCEPT SELECT * FROM pg_temp.objects()) x;
        SELECT count(*) INTO extra FROM (SELECT * FROM pg_temp.objects() EXCEPT SELECT * FROM reference) x;
        RAISE WARNING 'path % (%): % missing, % extra', p.path, p.source, missing, extra;
        EXECUTE 'DROP EXTENSION customer_unify';
    END LOOP;
END
$$;
SELECT count(*) AS update_paths FROM pg_extension_update_paths('customer_unify') WHERE path IS NOT NULL;
-- leave the extension installed for later tests
CREATE EXTENSION customer_unify;
SELECT extversion FROM pg_extension WHERE extname = 'customer_unify';
