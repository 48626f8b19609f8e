/* migrations.h — the schema migrations, embedded into the binary at build time.
 *
 * db/migrations/NNNN_name.sql are turned into a C array by db/embed.c (a native build tool run
 * by meson), so the program never looks for SQL files at run time. Migration i (1-based) brings
 * a database from user_version i-1 to i; the array is in order and has no gaps. */
#ifndef RLHF_DB_MIGRATIONS_H
#define RLHF_DB_MIGRATIONS_H

typedef struct {
    int version;      /* the user_version after this migration has run */
    const char *name; /* file name, e.g. "0001_initial.sql" */
    const char *sql;  /* the whole script, NUL-terminated */
} db_migration;

extern const db_migration db_migrations[];
extern const int db_migrations_count;

#endif
