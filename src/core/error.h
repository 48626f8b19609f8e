/* error.h — the project-wide return codes and the error buffer that carries a readable message.
 *
 * Library code (src/, db/, feedback/) never prints or exits: a function returns 0 on success or
 * one negative RLHF_ERR_* code, and when the caller passed an rlhf_error it also fills in a
 * message naming what failed (file, line, tensor, field). Only repl/ shows messages to people. */
#ifndef RLHF_ERROR_H
#define RLHF_ERROR_H

#include <stddef.h>

enum rlhf_err {
    RLHF_OK = 0,
    RLHF_ERR_NOMEM = -1,       /* an allocation failed */
    RLHF_ERR_IO = -2,          /* open/read/write/rename failed (errno in the message) */
    RLHF_ERR_FORMAT = -3,      /* a file or text is malformed: bad header, bad JSON, truncated */
    RLHF_ERR_SHAPE = -4,       /* a tensor or config disagrees with what is expected */
    RLHF_ERR_INVALID = -5,     /* an argument or option value is out of range */
    RLHF_ERR_UNSUPPORTED = -6, /* valid input this program does not handle (yet) */
    RLHF_ERR_NOT_FOUND = -7,   /* a named thing (tensor, row, file) is missing */
    RLHF_ERR_NUMERIC = -8,     /* NaN or inf where a finite number is required */
    RLHF_ERR_DB = -9,          /* the database refused (constraint, corruption, version) */
    RLHF_ERR_INTERRUPTED = -10,/* stopped by the user (Ctrl-C); what was saved is consistent */
    RLHF_ERR_BUSY = -11,       /* a resource stayed locked past its timeout */
};

/* A message buffer owned by the caller. Functions taking `rlhf_error *err` accept NULL. */
typedef struct {
    int code;       /* the last code set, 0 if none */
    char msg[1024]; /* human-readable, one line, no trailing newline */
} rlhf_error;

/* Name of a code, e.g. "format error". Never NULL. */
const char *rlhf_strerror(int code);

/* Sets err (if not NULL) to `code` and a printf-style message; returns `code` so a function
 * can end with `return rlhf_errorf(err, RLHF_ERR_FORMAT, "%s: bad magic", path);`. */
int rlhf_errorf(rlhf_error *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefixes the existing message with more context ("loading DIR: " + old message). */
int rlhf_error_prefix(rlhf_error *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#endif
