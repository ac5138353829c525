/*-------------------------------------------------------------------------
 * phone.cpp
 *	  The libphonenumber wrapper: phone numbers to E.164.
 *
 *	  The only C++ of the module.  The rules that keep it safe inside a
 *	  PostgreSQL backend:
 *	   * no PostgreSQL header and no PostgreSQL function here: no ereport,
 *	     elog or palloc, so no longjmp ever crosses a C++ frame;
 *	   * every function exported (extern "C", declared in phone.h) takes and
 *	     returns plain data and catches every exception itself, so none
 *	     ever unwinds into C;
 *	   * libphonenumber logs nothing (NullLogger); the caller (normalize.c)
 *	     raises whatever error a status code means.
 *-------------------------------------------------------------------------
 */
#include "phone.h"

#include <cstring>
#include <exception>
#include <new>
#include <string>

#include <phonenumbers/logger.h>
#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

using i18n::phonenumbers::NullLogger;
using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

namespace
{

/* copy a NUL-terminated message into a caller's buffer, truncated */
void
copy_message(char *buf, size_t size, const char *msg)
{
	if (buf == NULL || size == 0)
		return;
	std::strncpy(buf, msg, size - 1);
	buf[size - 1] = '\0';
}

/* The library's singleton, muted on first use (it must never write to the server's stderr). */
const PhoneNumberUtil *
util()
{
	static PhoneNumberUtil *instance = NULL;

	if (instance == NULL)
	{
		PhoneNumberUtil *u = PhoneNumberUtil::GetInstance();

		u->SetLogger(new NullLogger());
		instance = u;
	}
	return instance;
}

/*
 * True for ASCII text with fewer than two digits: never a number, since
 * Parse wants at least two (kMinLengthForNsn) before anything else.  Saves
 * the parse (some 15 us of regular expressions) for the blanks, "n/a" and
 * "call me" of real phone columns.  Non-ASCII text may hold other digits
 * (full-width, Arabic-Indic): it is always parsed.
 */
bool
too_few_digits(const char *input, size_t len)
{
	int			digits = 0;

	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) input[i];

		if (c >= 0x80)
			return false;
		if (c >= '0' && c <= '9' && ++digits >= 2)
			return false;
	}
	return true;
}

/* the status code of an exception caught, with its message */
int
caught(char *errbuf, size_t errsize)
{
	try
	{
		throw;
	}
	catch (const std::bad_alloc &)
	{
		copy_message(errbuf, errsize, "out of memory in libphonenumber");
		return CU_PHONE_NO_MEMORY;
	}
	catch (const std::exception &e)
	{
		copy_message(errbuf, errsize, e.what());
		return CU_PHONE_INTERNAL;
	}
	catch (...)
	{
		copy_message(errbuf, errsize, "unknown C++ exception in libphonenumber");
		return CU_PHONE_INTERNAL;
	}
}

}								/* namespace */

extern "C" int
cu_phone_check_region(const char *region, char *errbuf, size_t errsize)
{
	try
	{
		return util()->GetCountryCodeForRegion(std::string(region)) != 0
			? CU_PHONE_OK : CU_PHONE_BAD_REGION;
	}
	catch (...)
	{
		return caught(errbuf, errsize);
	}
}

extern "C" int
cu_phone_to_e164(const char *input, size_t len, const char *region,
				 char *out, size_t outsize, char *errbuf, size_t errsize)
{
	try
	{
		const PhoneNumberUtil *u = util();
		PhoneNumber number;
		std::string e164;

		if (too_few_digits(input, len))
			return CU_PHONE_NOT_A_NUMBER;
		/* "ZZ", the unknown region: only numbers in international form parse */
		if (u->Parse(std::string(input, len), region != NULL ? region : "ZZ", &number)
			!= PhoneNumberUtil::NO_PARSING_ERROR)
			return CU_PHONE_NOT_A_NUMBER;
		if (u->IsPossibleNumberWithReason(number) != PhoneNumberUtil::IS_POSSIBLE)
			return CU_PHONE_NOT_A_NUMBER;
		u->Format(number, PhoneNumberUtil::E164, &e164);
		if (e164.empty() || e164.size() >= outsize)
			return CU_PHONE_NOT_A_NUMBER;
		std::memcpy(out, e164.data(), e164.size());
		out[e164.size()] = '\0';
		return CU_PHONE_OK;
	}
	catch (...)
	{
		return caught(errbuf, errsize);
	}
}
