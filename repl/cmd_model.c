/* cmd_model.c — placeholder until its issue lands: the command says plainly it is not built. */
#include "repl/commands.h"

int cmd_model(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

int cmd_loss(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

int cmd_logits(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

