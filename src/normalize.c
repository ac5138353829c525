/*-------------------------------------------------------------------------
 * normalize.c
 *	  The normalizers: the match keys of e-mail addresses and phone
 *	  numbers, splitting and joining person names, and the version of each
 *	  normalizer's rules.
 *
 *	  A normalizer returns the key two values are matched on, never a
 *	  corrected value to write back: NULL means "not an address / not a
 *	  number", so matching skips the value instead of guessing.  Every key
 *	  a merge derives is stored beside normalizer_version(), because the
 *	  keys change when these rules or the libraries under them change:
 *	   * normalize_email: lower-cases ASCII letters only (never Unicode case
 *	     folding, which let "ı" match "i" in Django, CVE-2019-19844); the
 *	     domain in its IDNA ASCII form through libidn2;
 *	   * normalize_phone: E.164 through Google's libphonenumber, reached
 *	     through the C interface of phone.cpp (phone.h); every PostgreSQL
 *	     error about a phone number is raised here, never in C++;
 *	   * split_name / join_name: on characters (pg_mblen), not bytes.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <idn2.h>

#include "access/htup_details.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "customer_unify.h"
#include "phone.h"

/* The versions of the rules below: bump one whenever its keys could change. */
#define CU_EMAIL_RULES		1
#define CU_EMAIL_PROVIDER_RULES 1
#define CU_PHONE_RULES		1
#define CU_SPLIT_NAME_RULES 1

/* libphonenumber has no version call: the Makefile passes its Debian package's */
#ifndef CU_PHONENUMBER_VERSION
#define CU_PHONENUMBER_VERSION "unknown"
#endif

#define EMAIL_LOCAL_MAX		64	/* RFC 5321 4.5.3.1.1 */
#define EMAIL_DOMAIN_MAX	253 /* RFC 1035, without the trailing dot */
#define EMAIL_LABEL_MAX		63
#define EMAIL_DOMAIN_INPUT_MAX 1024 /* longer input cannot become a domain */

PG_FUNCTION_INFO_V1(cu_normalize_email);
PG_FUNCTION_INFO_V1(cu_normalize_email_provider);
PG_FUNCTION_INFO_V1(cu_normalize_phone);
PG_FUNCTION_INFO_V1(cu_normalize_phone_intl);
PG_FUNCTION_INFO_V1(cu_split_name);
PG_FUNCTION_INFO_V1(cu_join_name);
PG_FUNCTION_INFO_V1(cu_join_person_name);
PG_FUNCTION_INFO_V1(cu_normalizer_version);

/* ------------------------------------------------------------ characters */

/* Unicode White_Space (of which only the ASCII ones outside a UTF8 database) */
static inline bool
is_space_code(pg_wchar c)
{
	return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 ||
		c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
		c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/*
 * The length in bytes of the character at p (never past end), and whether
 * it is white space.  Every server encoding keeps ASCII bytes out of its
 * multibyte characters, so a byte below 0x80 is always an ASCII character.
 */
static inline int
char_at(const char *p, const char *end, bool utf8, bool *space)
{
	unsigned char c = (unsigned char) *p;
	int			len;

	if (c < 0x80)
	{
		*space = is_space_code(c);
		return 1;
	}
	len = pg_mblen(p);
	if (len > end - p)
		len = (int) (end - p);
	*space = utf8 && len >= 2 && is_space_code(utf8_to_unicode((const unsigned char *) p));
	return len;
}

/* [*start, *end) without the white space around it */
static void
trim_range(const char **start, const char **end, bool utf8)
{
	const char *p = *start;
	const char *first = NULL;
	const char *last_end = *start;

	while (p < *end)
	{
		bool		space;
		int			len = char_at(p, *end, utf8, &space);

		if (!space)
		{
			if (first == NULL)
				first = p;
			last_end = p + len;
		}
		p += len;
	}
	*start = first != NULL ? first : *end;
	*end = first != NULL ? last_end : *end;
}

static inline bool
ascii_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
ascii_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static inline char
ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (char) (c + ('a' - 'A')) : (char) c;
}

/* ----------------------------------------------------------------- email */

/* atext of RFC 5322 3.2.3, the characters of a dot-atom besides '.' */
static inline bool
email_atext(unsigned char c)
{
	return ascii_alpha(c) || ascii_digit(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * A domain in ASCII (already lower-case): labels of letters, digits and
 * hyphens (RFC 1123 host names), 1 to 63 bytes, no hyphen first or last,
 * at least two labels, and a top-level label that is not all digits (no
 * IPv4 address without brackets).
 */
static bool
email_domain_ok(const char *d, int len)
{
	int			labels = 0;
	int			i = 0;

	if (len < 1 || len > EMAIL_DOMAIN_MAX)
		return false;
	while (i <= len)
	{
		int			start = i;
		bool		all_digits = true;

		while (i < len && d[i] != '.')
		{
			unsigned char c = (unsigned char) d[i];

			if (!(ascii_alpha(c) || ascii_digit(c) || c == '-'))
				return false;
			if (!ascii_digit(c))
				all_digits = false;
			i++;
		}
		if (i == start || i - start > EMAIL_LABEL_MAX ||
			d[start] == '-' || d[i - 1] == '-')
			return false;
		labels++;
		if (i == len && all_digits)
			return false;
		i++;					/* past the dot, or past the end */
	}
	return labels >= 2;
}

/*
 * The domain's ASCII form into out (EMAIL_DOMAIN_MAX + 1 bytes), or false.
 * An ASCII domain is lower-cased; one with non-ASCII letters, or with an
 * A-label (xn--) to be checked, goes through libidn2 (IDNA2008 with the
 * UTS #46 non-transitional mapping, as browsers and mail software look
 * names up: "Bücher.de" and "BÜCHER.DE" are the same domain, "faß.de"
 * and "fass.de" are not), only in a UTF8 database.
 */
static bool
email_domain(const char *d, int len, bool utf8, char *out)
{
	bool		ascii = true;
	bool		alabel = false;
	int			i;

	if (len < 1 || len > EMAIL_DOMAIN_INPUT_MAX)
		return false;
	for (i = 0; i < len; i++)
	{
		if ((unsigned char) d[i] >= 0x80)
			ascii = false;
		else if ((i == 0 || d[i - 1] == '.') && i + 4 <= len &&
				 pg_strncasecmp(d + i, "xn--", 4) == 0)
			alabel = true;
	}
	if (ascii && !alabel)
	{
		if (len > EMAIL_DOMAIN_MAX)
			return false;
		for (i = 0; i < len; i++)
			out[i] = ascii_lower((unsigned char) d[i]);
		out[len] = '\0';
	}
	else
	{
		char		input[EMAIL_DOMAIN_INPUT_MAX + 1];
		char	   *ace = NULL;
		size_t		acelen;
		int			rc;

		if (!ascii && !utf8)
			return false;
		memcpy(input, d, len);
		input[len] = '\0';
		rc = idn2_to_ascii_8z(input, &ace, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
		if (rc != IDN2_OK)
		{
			idn2_free(ace);
			return false;
		}
		acelen = strlen(ace);
		if (acelen > EMAIL_DOMAIN_MAX)
		{
			idn2_free(ace);
			return false;
		}
		/* lower-case again: libidn2 leaves ASCII labels as they came */
		for (i = 0; i < (int) acelen; i++)
			out[i] = ascii_lower((unsigned char) ace[i]);
		out[acelen] = '\0';
		idn2_free(ace);
	}
	return email_domain_ok(out, (int) strlen(out));
}

/*
 * The match key of an e-mail address into out (EMAIL_LOCAL_MAX + 1 +
 * EMAIL_DOMAIN_MAX + 1 bytes); its length, or -1 when s is not an address.
 */
static int
email_key(const char *s, int len, char *out)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	const char *b = s;
	const char *e = s + len;
	const char *p;
	const char *at = NULL;
	int			ats = 0;
	int			llen;
	int			i;

	trim_range(&b, &e, utf8);
	if (b == e)
		return -1;
	/* exactly one @, no white space inside */
	for (p = b; p < e;)
	{
		bool		space;
		int			clen = char_at(p, e, utf8, &space);

		if (space)
			return -1;
		if (*p == '@')
		{
			at = p;
			ats++;
		}
		p += clen;
	}
	if (ats != 1)
		return -1;

	/* the local part: a dot-atom of at most 64 bytes, non-ASCII kept as typed */
	llen = (int) (at - b);
	if (llen < 1 || llen > EMAIL_LOCAL_MAX || b[0] == '.' || b[llen - 1] == '.')
		return -1;
	for (i = 0; i < llen; i++)
	{
		unsigned char c = (unsigned char) b[i];

		if (c < 0x80 && !(email_atext(c) || (c == '.' && b[i + 1] != '.')))
			return -1;
		out[i] = ascii_lower(c);
	}
	out[llen] = '@';

	if (!email_domain(at + 1, (int) (e - at - 1), utf8, out + llen + 1))
		return -1;
	return llen + 1 + (int) strlen(out + llen + 1);
}

/*
 * The provider's rule on a key of email_key(), in place: Gmail ignores dots
 * and a +tag in the local part and googlemail.com is gmail.com; other
 * providers are assumed to ignore a +tag only.  Weaker than the address:
 * it is what some providers deliver, not what the address says.
 */
static int
email_provider_key(char *key, int len)
{
	char	   *at = memchr(key, '@', len);
	int			llen = (int) (at - key);
	const char *domain = at + 1;
	int			dlen = len - llen - 1;
	bool		gmail;
	int			n = 0;
	int			i;

	gmail = (dlen == 9 && memcmp(domain, "gmail.com", 9) == 0) ||
		(dlen == 14 && memcmp(domain, "googlemail.com", 14) == 0);
	for (i = 0; i < llen; i++)
	{
		if (key[i] == '+' && i > 0)
			break;				/* a tag, not a local part that starts with + */
		if (gmail && key[i] == '.')
			continue;
		key[n++] = key[i];
	}
	if (gmail)
	{
		memcpy(key + n, "@gmail.com", 10);
		return n + 10;
	}
	memmove(key + n, at, dlen + 1);
	return n + 1 + dlen;
}

/* normalize_email (or with provider, normalize_email_provider) for C callers */
text *
cu_email_key(const char *s, int len, bool provider)
{
	char		key[EMAIL_LOCAL_MAX + EMAIL_DOMAIN_MAX + 2];
	int			klen = email_key(s, len, key);

	if (klen < 0)
		return NULL;
	if (provider)
		klen = email_provider_key(key, klen);
	return cstring_to_text_with_len(key, klen);
}

Datum
cu_normalize_email(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	char		key[EMAIL_LOCAL_MAX + EMAIL_DOMAIN_MAX + 2];
	int			len = email_key(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), key);

	if (len < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(key, len));
}

Datum
cu_normalize_email_provider(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	char		key[EMAIL_LOCAL_MAX + EMAIL_DOMAIN_MAX + 2];
	int			len = email_key(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), key);

	if (len < 0)
		PG_RETURN_NULL();
	len = email_provider_key(key, len);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(key, len));
}

/* ----------------------------------------------------------------- phone */

/* the default region of normalize_phone: NULL for none, or its code, checked */
static const char *
phone_region(text *arg, char *buf)
{
	/* the last region found valid: the same one comes with every row */
	static char known[3] = "";
	const char *b = VARDATA_ANY(arg);
	const char *e = b + VARSIZE_ANY_EXHDR(arg);
	char		errbuf[CU_PHONE_ERR_SIZE];
	int			rc;

	trim_range(&b, &e, GetDatabaseEncoding() == PG_UTF8);
	if (b == e)
		return NULL;
	if (e - b != 2 || !ascii_alpha((unsigned char) b[0]) || !ascii_alpha((unsigned char) b[1]))
		rc = CU_PHONE_BAD_REGION;
	else
	{
		buf[0] = pg_ascii_toupper((unsigned char) b[0]);
		buf[1] = pg_ascii_toupper((unsigned char) b[1]);
		buf[2] = '\0';
		if (strcmp(buf, known) == 0)
			return buf;
		rc = cu_phone_check_region(buf, errbuf, sizeof(errbuf));
	}
	if (rc == CU_PHONE_OK)
	{
		memcpy(known, buf, 3);
		return buf;
	}
	if (rc == CU_PHONE_BAD_REGION)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid default region \"%s\" for normalize_phone",
						text_to_cstring(arg)),
				 errdetail("A region is a two-letter ISO 3166-1 code that libphonenumber has metadata for, such as 'US', 'GB' or 'DE'."),
				 errhint("Pass '' as the region, or call normalize_phone(text), to accept only numbers in international form (+...).")));
	cu_phone_raise(rc, errbuf);
	return NULL;				/* keep compiler quiet */
}

/* the error of a status code of phone.cpp that is not a result */
void
cu_phone_raise(int rc, const char *errbuf)
{
	if (rc == CU_PHONE_NO_MEMORY)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("libphonenumber could not allocate memory while parsing a phone number.")));
	ereport(ERROR,
			(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
			 errmsg("libphonenumber failed: %s", errbuf)));
}

/*
 * The E.164 form of a phone number, or NULL.  Text in another database
 * encoding is converted to UTF-8 first (libphonenumber reads UTF-8:
 * full-width and Arabic-Indic digits are digits); in SQL_ASCII, bytes that
 * are not UTF-8 are not a number.
 */
text *
cu_phone_key(const char *s, int len, const char *region)
{
	char		out[CU_PHONE_E164_SIZE];
	char		errbuf[CU_PHONE_ERR_SIZE];
	const char *utf8 = s;
	int			rc;
	int			i;

	for (i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80)
			break;
	if (i < len && GetDatabaseEncoding() != PG_UTF8)
	{
		if (GetDatabaseEncoding() == PG_SQL_ASCII)
		{
			if (!pg_verify_mbstr(PG_UTF8, s, len, true))
				return NULL;
		}
		else
		{
			utf8 = pg_server_to_any(s, len, PG_UTF8);
			if (utf8 != s)
				len = strlen(utf8);
		}
	}
	rc = cu_phone_to_e164(utf8, len, region, out, sizeof(out), errbuf, sizeof(errbuf));
	if (rc == CU_PHONE_NOT_A_NUMBER)
		return NULL;
	if (rc != CU_PHONE_OK)
		cu_phone_raise(rc, errbuf);
	return cstring_to_text(out);
}

Datum
cu_normalize_phone(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	char		regionbuf[3];
	const char *region = phone_region(PG_GETARG_TEXT_PP(1), regionbuf);
	text	   *key = cu_phone_key(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), region);

	if (key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(key);
}

/* normalize_phone(text): no default region, only numbers in international form */
Datum
cu_normalize_phone_intl(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	text	   *key = cu_phone_key(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), NULL);

	if (key == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(key);
}

/* ----------------------------------------------------------------- names */

/* lower-case particles that belong to the last name: "Ludwig van Beethoven" */
static const char *const name_particles[] = {
	"van", "von", "de", "da", "del", "der", "di", "le", "la", "du", "dos", "bin", "al", NULL
};

typedef struct NameToken
{
	const char *p;
	int			len;
} NameToken;

/* the words of [b, e), split at runs of white space; returns how many */
static int
name_tokens(const char *b, const char *e, bool utf8, NameToken *tokens)
{
	int			n = 0;
	const char *p = b;
	const char *start = NULL;

	while (p < e)
	{
		bool		space;
		int			len = char_at(p, e, utf8, &space);

		if (space && start != NULL)
		{
			tokens[n].p = start;
			tokens[n++].len = (int) (p - start);
			start = NULL;
		}
		else if (!space && start == NULL)
			start = p;
		p += len;
	}
	if (start != NULL)
	{
		tokens[n].p = start;
		tokens[n++].len = (int) (e - start);
	}
	return n;
}

/* tokens[from..to) joined by one space; NULL when there are none */
static text *
name_join_tokens(NameToken *tokens, int from, int to)
{
	StringInfoData buf;
	int			i;

	if (from >= to)
		return NULL;
	initStringInfo(&buf);
	for (i = from; i < to; i++)
	{
		if (i > from)
			appendStringInfoChar(&buf, ' ');
		appendBinaryStringInfo(&buf, tokens[i].p, tokens[i].len);
	}
	return cstring_to_text_with_len(buf.data, buf.len);
}

/* the words of [b, e) joined by one space; NULL when there are none */
static text *
name_collapse(const char *b, const char *e, bool utf8)
{
	/* at most one token every two bytes */
	NameToken  *tokens = palloc(sizeof(NameToken) * ((e - b) / 2 + 1));

	return name_join_tokens(tokens, 0, name_tokens(b, e, utf8, tokens));
}

static bool
name_is_particle(const NameToken *t)
{
	int			i;

	for (i = 0; name_particles[i] != NULL; i++)
		if ((int) strlen(name_particles[i]) == t->len &&
			memcmp(name_particles[i], t->p, t->len) == 0)
			return true;
	return false;
}

/*
 * A person's name split into first and last name.
 *	 "Last, First"        at the first comma;
 *	 "Name"               first name only;
 *	 "First Rest of It"   the first word is the first name, the rest the last
 *	                      name, unless the first word is a lower-case
 *	                      particle ("de la Cruz"): then all is the last name.
 */
void
cu_split_name_parts(const char *s, int len, text **first, text **last)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	const char *b = s;
	const char *e = s + len;
	const char *comma;
	NameToken  *tokens;
	int			n;

	*first = *last = NULL;
	trim_range(&b, &e, utf8);
	if (b == e)
		return;
	comma = memchr(b, ',', e - b);
	if (comma != NULL)
	{
		*last = name_collapse(b, comma, utf8);
		*first = name_collapse(comma + 1, e, utf8);
		return;
	}
	tokens = palloc(sizeof(NameToken) * ((e - b) / 2 + 1));
	n = name_tokens(b, e, utf8, tokens);
	if (n == 1)
		*first = name_join_tokens(tokens, 0, 1);
	else if (name_is_particle(&tokens[0]))
		*last = name_join_tokens(tokens, 0, n);
	else
	{
		*first = name_join_tokens(tokens, 0, 1);
		*last = name_join_tokens(tokens, 1, n);
	}
}

/* the blessed descriptor of person_name, kept for the calls of one expression */
static TupleDesc
person_name_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	desc = (TupleDesc) fcinfo->flinfo->fn_extra;

	if (desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);

		if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
			elog(ERROR, "customer_unify: split_name must return a composite type");
		if (desc->natts != 2)
			elog(ERROR, "customer_unify: person_name must have two columns, not %d", desc->natts);
		desc = BlessTupleDesc(CreateTupleDescCopy(desc));
		MemoryContextSwitchTo(old);
		fcinfo->flinfo->fn_extra = desc;
	}
	return desc;
}

Datum
cu_split_name(PG_FUNCTION_ARGS)
{
	text	   *in = PG_GETARG_TEXT_PP(0);
	TupleDesc	desc = person_name_desc(fcinfo);
	text	   *first;
	text	   *last;
	Datum		values[2];
	bool		nulls[2];

	cu_split_name_parts(VARDATA_ANY(in), VARSIZE_ANY_EXHDR(in), &first, &last);
	values[0] = PointerGetDatum(first);
	nulls[0] = first == NULL;
	values[1] = PointerGetDatum(last);
	nulls[1] = last == NULL;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/* first and last name, each trimmed, joined by one space; NULL when both are blank */
static Datum
join_name(FunctionCallInfo fcinfo, text *first, text *last)
{
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	const char *fb = NULL,
			   *fe = NULL,
			   *lb = NULL,
			   *le = NULL;
	StringInfoData buf;

	if (first != NULL)
	{
		fb = VARDATA_ANY(first);
		fe = fb + VARSIZE_ANY_EXHDR(first);
		trim_range(&fb, &fe, utf8);
	}
	if (last != NULL)
	{
		lb = VARDATA_ANY(last);
		le = lb + VARSIZE_ANY_EXHDR(last);
		trim_range(&lb, &le, utf8);
	}
	if (fb == fe && lb == le)
		PG_RETURN_NULL();
	initStringInfo(&buf);
	if (fb != fe)
		appendBinaryStringInfo(&buf, fb, (int) (fe - fb));
	if (fb != fe && lb != le)
		appendStringInfoChar(&buf, ' ');
	if (lb != le)
		appendBinaryStringInfo(&buf, lb, (int) (le - lb));
	PG_RETURN_TEXT_P(cstring_to_text_with_len(buf.data, buf.len));
}

/* join_name(first_name text, last_name text), not strict */
Datum
cu_join_name(PG_FUNCTION_ARGS)
{
	return join_name(fcinfo,
					 PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0),
					 PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
}

/* join_name(person_name): the inverse of split_name */
Datum
cu_join_person_name(PG_FUNCTION_ARGS)
{
	HeapTupleHeader name = PG_GETARG_HEAPTUPLEHEADER(0);
	bool		null_first;
	bool		null_last;
	Datum		first = GetAttributeByNum(name, 1, &null_first);
	Datum		last = GetAttributeByNum(name, 2, &null_last);

	return join_name(fcinfo,
					 null_first ? NULL : DatumGetTextPP(first),
					 null_last ? NULL : DatumGetTextPP(last));
}

/* -------------------------------------------------------------- versions */

/* the version of a normalizer's rules and the library under them; NULL when unknown */
const char *
cu_normalizer_version_string(const char *name)
{
	if (strcmp(name, "normalize_email") == 0)
		return psprintf("normalize_email/%d libidn2/%s", CU_EMAIL_RULES, idn2_check_version(NULL));
	if (strcmp(name, "normalize_email_provider") == 0)
		return psprintf("normalize_email_provider/%d libidn2/%s", CU_EMAIL_PROVIDER_RULES,
						idn2_check_version(NULL));
	if (strcmp(name, "normalize_phone") == 0)
		return psprintf("normalize_phone/%d libphonenumber/%s", CU_PHONE_RULES, CU_PHONENUMBER_VERSION);
	if (strcmp(name, "split_name") == 0)
		return psprintf("split_name/%d", CU_SPLIT_NAME_RULES);
	return NULL;
}

Datum
cu_normalizer_version(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *version = cu_normalizer_version_string(name);

	if (version == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown normalizer \"%s\"", name),
				 errhint("The normalizers are normalize_email, normalize_email_provider, normalize_phone and split_name.")));
	PG_RETURN_TEXT_P(cstring_to_text(version));
}
