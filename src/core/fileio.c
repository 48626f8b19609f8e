/* fileio.c — whole-file reads, atomic writes (temp + fsync + rename + dir fsync), mkdir -p. */
#include "src/core/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, char **out, size_t *len, rlhf_error *err) {
    *out = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) goto nomem;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) goto nomem;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (got == 0) break;
    }
    if (ferror(fp)) {
        int e = errno;
        free(buf);
        fclose(fp);
        return rlhf_errorf(err, RLHF_ERR_IO, "%s: read failed: %s", path, strerror(e));
    }
    fclose(fp);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return RLHF_OK;
nomem:
    free(buf);
    fclose(fp);
    return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory reading file", path);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Removes "<path>.tmp.<pid>" files whose writer no longer runs: what a writer killed in the
 * middle of a save left behind (a checkpoint saved every step by a process killed over and over
 * would otherwise fill the disk). A temporary file of a live process is left alone. */
static void remove_stale_temps(const char *path) {
    char *dir = dup_str(path);
    if (!dir) return;
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash) *slash = '\0';
    const size_t base_len = strlen(base);
    DIR *d = opendir(slash ? (dir[0] ? dir : "/") : ".");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *name = e->d_name;
            if (strncmp(name, base, base_len) || strncmp(name + base_len, ".tmp.", 5)) continue;
            char *end;
            const long pid = strtol(name + base_len + 5, &end, 10);
            if (end == name + base_len + 5 || *end || pid <= 0) continue;
            if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
            char *victim = malloc(strlen(path) + strlen(name) + 2);
            if (!victim) break;
            sprintf(victim, "%s%s%s", slash ? dir : "", slash ? "/" : "", name);
            unlink(victim);
            free(victim);
        }
        closedir(d);
    }
    free(dir);
}

int file_atomic_open(file_atomic *fa, const char *path, rlhf_error *err) {
    memset(fa, 0, sizeof *fa);
    size_t n = strlen(path) + 32;
    fa->path = dup_str(path);
    fa->tmp_path = malloc(n);
    if (!fa->path || !fa->tmp_path) {
        file_atomic_abort(fa);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(fa->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    remove_stale_temps(path);
    fa->fp = fopen(fa->tmp_path, "wb");
    if (!fa->fp) {
        int e = errno;
        rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot create: %s", fa->tmp_path, strerror(e));
        file_atomic_abort(fa);
        return RLHF_ERR_IO;
    }
    return RLHF_OK;
}

static void fsync_parent_dir(const char *path) {
    char *d = dup_str(path);
    if (!d) return;
    char *slash = strrchr(d, '/');
    const char *dir = ".";
    if (slash) {
        if (slash == d) slash[1] = '\0';
        else *slash = '\0';
        dir = d;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: some filesystems refuse fsync on directories */
        close(fd);
    }
    free(d);
}

int file_atomic_commit(file_atomic *fa, rlhf_error *err) {
    if (!fa->fp) return rlhf_errorf(err, RLHF_ERR_INVALID, "atomic write: file not open");
    int rc = RLHF_OK;
    if (fflush(fa->fp) != 0 || fsync(fileno(fa->fp)) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed: %s", fa->path, strerror(errno));
        goto fail;
    }
    if (fclose(fa->fp) != 0) {
        fa->fp = NULL;
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: close failed: %s", fa->path, strerror(errno));
        goto fail;
    }
    fa->fp = NULL;
    if (rename(fa->tmp_path, fa->path) != 0) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: rename failed: %s", fa->path, strerror(errno));
        goto fail;
    }
    fsync_parent_dir(fa->path);
    free(fa->path);
    free(fa->tmp_path);
    memset(fa, 0, sizeof *fa);
    return RLHF_OK;
fail:
    file_atomic_abort(fa);
    return rc;
}

void file_atomic_abort(file_atomic *fa) {
    if (fa->fp) fclose(fa->fp);
    if (fa->tmp_path) unlink(fa->tmp_path);
    free(fa->path);
    free(fa->tmp_path);
    memset(fa, 0, sizeof *fa);
}

int file_write_atomic(const char *path, const void *data, size_t len, rlhf_error *err) {
    file_atomic fa;
    int rc = file_atomic_open(&fa, path, err);
    if (rc) return rc;
    if (len && fwrite(data, 1, len, fa.fp) != len) {
        rc = rlhf_errorf(err, RLHF_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        file_atomic_abort(&fa);
        return rc;
    }
    return file_atomic_commit(&fa, err);
}

int file_mkdir_p(const char *path, rlhf_error *err) {
    char *p = dup_str(path);
    if (!p) return rlhf_errorf(err, RLHF_ERR_NOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) goto fail;
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) goto fail;
    free(p);
    if (!file_is_dir(path)) return rlhf_errorf(err, RLHF_ERR_IO, "%s: exists and is not a directory", path);
    return RLHF_OK;
fail:;
    int e = errno;
    rlhf_errorf(err, RLHF_ERR_IO, "%s: cannot create directory: %s", p, strerror(e));
    free(p);
    return RLHF_ERR_IO;
}

int file_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
