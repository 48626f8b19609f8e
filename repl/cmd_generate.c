/* cmd_generate.c — placeholder until its issue lands: the command says plainly it is not built. */
#include "repl/commands.h"

int cmd_generate(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

