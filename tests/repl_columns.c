/* repl_columns — prints its arguments side by side through columns_print (repl/columns.h):
 * titles "A", "B", ..., the arguments as texts, a two-line footer each. tests/repl_columns.py
 * checks the result's alignment with widths of its own (Python's unicodedata). */
#include <stdio.h>

#include "repl/columns.h"

int main(int argc, char **argv) {
    char *titles[COLUMNS_MAX], *foots[COLUMNS_MAX], names[COLUMNS_MAX][32];
    int k = argc - 1 < COLUMNS_MAX ? argc - 1 : COLUMNS_MAX;
    for (int i = 0; i < k; i++) {
        snprintf(names[i], sizeof names[i], "%c", 'A' + i);
        titles[i] = names[i];
        foots[i] = "12 tok · eos\nlogprob -3.21";
    }
    columns_print(titles, argv + 1, foots, k);
    return 0;
}
