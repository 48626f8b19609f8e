/* out.c — output sinks, error lines and the live progress line. */
#include "repl/out.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

static FILE *g_out, *g_err;
static int g_progress_showing;

void out_set_sinks(FILE *out, FILE *err) {
    g_out = out;
    g_err = err;
}

FILE *out_stream(void) { return g_out ? g_out : stdout; }
static FILE *err_stream(void) { return g_err ? g_err : stderr; }

void out_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out_stream(), fmt, ap);
    va_end(ap);
}

void out_error(const char *fmt, ...) {
    out_progress_end();
    FILE *e = err_stream();
    fputs("rlhf: ", e);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(e, fmt, ap);
    va_end(ap);
    fputc('\n', e);
}

int out_fail(const rlhf_error *err) {
    if (err && err->msg[0]) out_error("%s", err->msg);
    else out_error("%s", rlhf_strerror(err ? err->code : RLHF_ERR_INVALID));
    return 1;
}

void out_progress(const char *fmt, ...) {
    FILE *e = err_stream();
    int tty = isatty(fileno(e));
    if (tty) fputs("\r\033[K", e);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(e, fmt, ap);
    va_end(ap);
    if (tty) g_progress_showing = 1;
    else fputc('\n', e);
    fflush(e);
}

void out_progress_end(void) {
    if (g_progress_showing) {
        fputc('\n', err_stream());
        g_progress_showing = 0;
    }
}

void out_json_string(const char *s) {
    out_printf("\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') out_printf("\\%c", *p);
        else if (*p < 0x20) out_printf("\\u%04x", *p);
        else out_printf("%c", *p);
    }
    out_printf("\"");
}

/* A number as JSON, null when not finite (JSON has no NaN). A value that is exactly a float
 * gets the shortest text that reads back as that float (1e-05, not 9.99999975e-06); a double
 * gets all 17 digits. */
void out_json_float(double v) {
    if (!isfinite(v)) {
        out_printf("null");
        return;
    }
    char buf[40];
    float f = (float)v;
    if ((double)f == v) {
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, v);
            if ((float)strtod(buf, NULL) == f) break;
        }
    } else {
        snprintf(buf, sizeof buf, "%.17g", v);
    }
    out_printf("%s", buf);
}

