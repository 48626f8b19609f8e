/* redact.h — masking personal identifiers in text leaving the database (`export --redact`).
 *
 * Recognised, by hand-written scanners rather than regular expressions so the rules are
 * explicit and testable: e-mail addresses -> [EMAIL]; IPv4 addresses -> [IP]; runs of 13-19
 * digits (optionally grouped by spaces or dashes) as card numbers -> [CARD]; US-style social
 * security numbers 123-45-6789 -> [ID]; phone numbers -> [PHONE] (a leading +country code with
 * 8-15 digits, "(555) 123-4567", groups ending in four digits with 10-13 digits in all such as
 * 555-123-4567 or 1-800-555-1234, and the local form 555-1234). Dates (2024-01-15), years,
 * decimals and ordinary counts are left alone. It is a filter against accidents, not a
 * guarantee: names and street addresses are not detected. */
#ifndef RLHF_FEEDBACK_REDACT_H
#define RLHF_FEEDBACK_REDACT_H

#include <stddef.h>

/* A newly allocated copy of `text` with identifiers masked (the caller frees it), or NULL if
 * out of memory. *n_masked (may be NULL) is increased by the number of masks applied. */
char *redact_text(const char *text, size_t *n_masked);

#endif
