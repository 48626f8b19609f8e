/* test_fileio.c — atomic writes replace whole files and leave no temporaries behind. */
#include <dirent.h>
#include <unistd.h>

#include "src/core/fileio.h"
#include "tests/test_util.h"

int main(void) {
    char path[4200], sub[4200];
    snprintf(path, sizeof path, "%s/a.txt", test_tmpdir());
    rlhf_error err = {0};
    CHECK(file_write_atomic(path, "hello", 5, &err) == 0, "write: %s", err.msg);
    char *buf = NULL;
    size_t len = 0;
    CHECK(file_read_all(path, &buf, &len, &err) == 0 && len == 5 && memcmp(buf, "hello", 5) == 0,
          "read back what was written");
    free(buf);

    /* an aborted write leaves the old content */
    file_atomic fa;
    CHECK(file_atomic_open(&fa, path, &err) == 0, "open: %s", err.msg);
    fputs("partial", fa.fp);
    file_atomic_abort(&fa);
    file_atomic_abort(&fa); /* safe twice */
    CHECK(file_read_all(path, &buf, &len, &err) == 0 && len == 5, "abort keeps the previous file");
    free(buf);

    DIR *d = opendir(test_tmpdir());
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') entries++;
    closedir(d);
    CHECK(entries == 1, "no temporary files left (%d entries)", entries);

    CHECK(file_read_all("/nonexistent/x", &buf, &len, &err) == RLHF_ERR_IO && strstr(err.msg, "/nonexistent/x"),
          "missing file error names the path: %s", err.msg);

    snprintf(sub, sizeof sub, "%s/x/y/z", test_tmpdir());
    CHECK(file_mkdir_p(sub, &err) == 0 && file_is_dir(sub), "mkdir -p");
    unlink(path);
    return test_finish("test_fileio");
}
