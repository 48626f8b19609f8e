/* out.c — output sinks, error lines and the live progress line. */
#include "repl/out.h"

#include <stdarg.h>
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
