/* cmd_db.c — placeholder until its issue lands: the command says plainly it is not built. */
#include "repl/commands.h"

int cmd_db(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

