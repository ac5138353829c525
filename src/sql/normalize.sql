-------------------------------------------------------------------------------
-- normalize.sql: the normalizers (C, src/normalize.c and src/phone.cpp) that
-- give the match keys of e-mail addresses, phone numbers and names.
--
-- A key is what two values are matched on, never a rewrite of what was
-- typed; NULL means "not an address / not a number", and matching skips it.
-- The keys are IMMUTABLE so that expression indexes can hold them, but they
-- depend on the rules' version and on libidn2 and libphonenumber:
-- normalizer_version() (STABLE) names both, the merge stores it beside
-- every key it derives, and an index on a key wants a REINDEX after either
-- library is upgraded.  The type person_name is in catalog/normalize-types.sql.
-------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION customer_unify.normalize_email(address text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_email';
COMMENT ON FUNCTION customer_unify.normalize_email(text) IS
    'The match key of an e-mail address: trimmed, ASCII letters of the local part lower-cased (other characters as typed: no Unicode case folding), the domain lower-cased in its IDNA ASCII form (libidn2; non-ASCII domains only in a UTF8 database). NULL for what is not an address: no or several @, white space inside, an empty or over-long (64 bytes) local part that is not a dot-atom, a domain without a dot or with an invalid label.';

CREATE OR REPLACE FUNCTION customer_unify.normalize_email_provider(address text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_email_provider';
COMMENT ON FUNCTION customer_unify.normalize_email_provider(text) IS
    'A weaker key than normalize_email, which it starts from: what some providers deliver to one mailbox. gmail.com and googlemail.com: dots and a +tag of the local part removed, the domain gmail.com; other domains: a +tag removed. Two addresses with one provider key need not be one mailbox: match on it only where that risk is accepted.';

CREATE OR REPLACE FUNCTION customer_unify.normalize_phone(phone text, default_region text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_phone';
COMMENT ON FUNCTION customer_unify.normalize_phone(text, text) IS
    'The E.164 form (+14155550100) of a phone number, parsed by libphonenumber with default_region (ISO 3166-1 code, e.g. ''US'') for numbers in national form; an empty region accepts only the international form (+...). NULL for what does not parse or is not a possible number (IsPossibleNumber: the length fits the country''s plan). Extensions are dropped. An unknown region is an error (22023). STRICT: a NULL region gives NULL; for numbers in international form only, pass '''' or call normalize_phone(text).';

CREATE OR REPLACE FUNCTION customer_unify.normalize_phone(phone text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalize_phone_intl';
COMMENT ON FUNCTION customer_unify.normalize_phone(text) IS
    'normalize_phone without a default region: only numbers in international form (+...) parse; NULL for the rest.';

CREATE OR REPLACE FUNCTION customer_unify.split_name(full_name text) RETURNS customer_unify.person_name
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_split_name';
COMMENT ON FUNCTION customer_unify.split_name(text) IS
    'A full name split into first and last name, white space trimmed and collapsed: "Last, First" at the first comma; one word is a first name; otherwise the first word is the first name and the rest the last name, unless the first word is a lower-case particle (van, von, de, da, del, der, di, le, la, du, dos, bin, al), which keeps all with the last name. Empty parts are NULL.';

CREATE OR REPLACE FUNCTION customer_unify.join_name(first_name text, last_name text) RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_join_name';
COMMENT ON FUNCTION customer_unify.join_name(text, text) IS
    'First and last name, each trimmed, joined by one space; either may be NULL or blank; NULL when both are.';

CREATE OR REPLACE FUNCTION customer_unify.join_name(name customer_unify.person_name) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_join_person_name';
COMMENT ON FUNCTION customer_unify.join_name(customer_unify.person_name) IS
    'join_name of the two fields of a person_name: join_name(split_name(x)) is x with its white space collapsed, for names without a comma.';

CREATE OR REPLACE FUNCTION customer_unify.normalizer_version(normalizer text) RETURNS text
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'cu_normalizer_version';
COMMENT ON FUNCTION customer_unify.normalizer_version(text) IS
    'The version of a normalizer''s rules and of the library under them (e.g. ''normalize_email/1 libidn2/2.3.3''), stored beside every key derived from it: keys of different versions may differ. For normalize_email, normalize_email_provider, normalize_phone and split_name; another name is an error (22023).';
