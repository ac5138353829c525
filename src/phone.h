/*-------------------------------------------------------------------------
 * phone.h
 *	  The C interface of phone.cpp, the wrapper around Google's
 *	  libphonenumber.  Plain data only: strings in, a status code and
 *	  buffers out.  Nothing here knows PostgreSQL; normalize.c turns the
 *	  status codes into results and errors.
 *-------------------------------------------------------------------------
 */
#ifndef CU_PHONE_H
#define CU_PHONE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C"
{
#endif

/* room for an E.164 number ('+', at most 15 digits) and its NUL, with margin */
#define CU_PHONE_E164_SIZE 32
/* room for the message of an unexpected exception */
#define CU_PHONE_ERR_SIZE 256

/* status codes of the functions below */
#define CU_PHONE_OK				0	/* done; out holds the result */
#define CU_PHONE_NOT_A_NUMBER	1	/* does not parse, or is not a possible number */
#define CU_PHONE_BAD_REGION		2	/* region is not one libphonenumber has metadata for */
#define CU_PHONE_NO_MEMORY		3	/* std::bad_alloc */
#define CU_PHONE_INTERNAL		4	/* any other exception; errbuf says what */

/*
 * The E.164 form (+14155550100) of the phone number in input (UTF-8, len
 * bytes, need not be NUL-terminated) into out (outsize bytes).  region is
 * the default region for numbers in national form, an upper-case ISO 3166
 * code ("US"); NULL means that only numbers in international form (+...)
 * parse.  A number parses when libphonenumber parses it and finds it
 * possible (IsPossibleNumberWithReason() == IS_POSSIBLE: its length fits
 * the numbering plan of its country).
 */
extern int	cu_phone_to_e164(const char *input, size_t len, const char *region,
							 char *out, size_t outsize, char *errbuf, size_t errsize);

/* CU_PHONE_OK when libphonenumber has metadata for region ("US"), else CU_PHONE_BAD_REGION */
extern int	cu_phone_check_region(const char *region, char *errbuf, size_t errsize);

#ifdef __cplusplus
}
#endif

#endif							/* CU_PHONE_H */
