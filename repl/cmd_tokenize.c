/* cmd_tokenize.c — placeholder until its issue lands: the command says plainly it is not built. */
#include "repl/commands.h"

int cmd_tokenize(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

int cmd_detokenize(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

int cmd_tokenizer(int argc, char **argv) {
    return command_placeholder(argc, argv);
}

