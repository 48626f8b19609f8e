/* error.c — names of the project-wide codes and the formatting of error messages. */
#include "src/core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *rlhf_strerror(int code) {
    switch (code) {
    case RLHF_OK: return "ok";
    case RLHF_ERR_NOMEM: return "out of memory";
    case RLHF_ERR_IO: return "i/o error";
    case RLHF_ERR_FORMAT: return "format error";
    case RLHF_ERR_SHAPE: return "shape mismatch";
    case RLHF_ERR_INVALID: return "invalid argument";
    case RLHF_ERR_UNSUPPORTED: return "unsupported";
    case RLHF_ERR_NOT_FOUND: return "not found";
    case RLHF_ERR_NUMERIC: return "non-finite number";
    case RLHF_ERR_DB: return "database error";
    case RLHF_ERR_INTERRUPTED: return "interrupted";
    case RLHF_ERR_BUSY: return "busy";
    default: return "unknown error";
    }
}

int rlhf_errorf(rlhf_error *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int rlhf_error_prefix(rlhf_error *err, const char *fmt, ...) {
    if (!err) return 0;
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err->msg)
        snprintf(err->msg + n, sizeof err->msg - (size_t)n, "%s", old);
    return err->code;
}
