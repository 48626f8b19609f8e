/* fileio.h — whole-file reads and atomic writes.
 *
 * Every file the project writes (checkpoints, tokenizer.json, exports, backups) goes through an
 * atomic writer: data is written to "PATH.tmp.PID", flushed and fsync'd, renamed over PATH and
 * the directory fsync'd, so a crash at any moment leaves either the old file or the new one. */
#ifndef RLHF_FILEIO_H
#define RLHF_FILEIO_H

#include <stdio.h>
#include <stddef.h>

#include "src/core/error.h"

/* Reads a whole file into a NUL-terminated buffer the caller frees with free().
 * On success *out and *len are set; on error *out is NULL. */
int file_read_all(const char *path, char **out, size_t *len, rlhf_error *err);

typedef struct {
    FILE *fp;        /* write here between open and commit */
    char *path;      /* final path (owned) */
    char *tmp_path;  /* temporary path (owned) */
} file_atomic;

/* Opens a temporary file "<path>.tmp.<pid>" beside `path` for writing, and removes the temporary
 * files of `path` left by writers that no longer run (killed mid-save). */
int file_atomic_open(file_atomic *fa, const char *path, rlhf_error *err);
/* Flushes, fsyncs, renames over the final path, fsyncs the directory, frees fa. */
int file_atomic_commit(file_atomic *fa, rlhf_error *err);
/* Closes and removes the temporary file; the final path is untouched. Safe on a zeroed or
 * already committed/aborted struct. */
void file_atomic_abort(file_atomic *fa);

/* One-shot atomic write of a buffer. */
int file_write_atomic(const char *path, const void *data, size_t len, rlhf_error *err);

/* Creates a directory (and missing parents); succeeds if it exists. */
int file_mkdir_p(const char *path, rlhf_error *err);

/* 1 if path exists and is a directory, 0 otherwise. */
int file_is_dir(const char *path);
/* 1 if path exists and is a regular file, 0 otherwise. */
int file_exists(const char *path);

#endif
