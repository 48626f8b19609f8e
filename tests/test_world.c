/* test_world.c — the task world: every family's instances are deterministic, parse back as that
 * family, verify their own reference answers as correct and flawless, and every kind of flawed
 * answer is caught; the splits share no prompt; phrasings vary; stories are deterministic. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/world/world.h"
#include "tests/test_util.h"

#define N_ITEMS 300

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    rlhf_error err = {0};
    const int F = world_family_count();
    CHECK(F >= 10, "at least ten families (%d)", F);
    char **prompts[3];
    for (int s = 0; s < 3; s++) prompts[s] = calloc((size_t)F * N_ITEMS, sizeof(char *));
    for (int f = 0; f < F; f++) {
        const char *name = world_family_name(f);
        CHECK(world_family_find(name) == f, "%s: found by name", name);
        int bad_make = 0, bad_family = 0, bad_verify = 0, bad_flaw[4] = {0};
        int distinct_starts = 0;
        char first_words[8][16] = {{0}};
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < N_ITEMS; i++) {
                world_item it, again;
                if (world_item_make(f, (world_split)s, (uint64_t)i, &it, &err) ||
                    world_item_make(f, (world_split)s, (uint64_t)i, &again, &err) ||
                    strcmp(it.prompt, again.prompt) || strcmp(it.answer, again.answer)) {
                    bad_make++;
                    continue;
                }
                prompts[s][(size_t)f * N_ITEMS + (size_t)i] = strdup(it.prompt);
                if (world_prompt_family(it.prompt) != f) bad_family++;
                world_verdict v;
                if (world_verify(it.prompt, it.answer, &v, &err) || !v.correct || v.flaws || v.reward != 1.0) {
                    if (bad_verify++ < 3)
                        fprintf(stderr, "  %s: \"%s\" -> \"%s\": correct %d flaws %u (expected \"%s\", read \"%s\")\n",
                                name, it.prompt, it.answer, v.correct, v.flaws, v.expected, v.got);
                }
                /* phrasings: the prompt's first word varies across instances */
                char w[16] = "";
                sscanf(it.prompt, "%15s", w);
                int seen = 0;
                for (int k = 0; k < distinct_starts; k++) seen |= strcmp(first_words[k], w) == 0;
                if (!seen && distinct_starts < 8) snprintf(first_words[distinct_starts++], 16, "%s", w);
                /* each flaw is seen by the verifier */
                const unsigned flaws[3] = {WORLD_FLAW_WRONG, WORLD_FLAW_RAMBLING, WORLD_FLAW_RUDE};
                for (int k = 0; k < 3; k++) {
                    char bad[4 * WORLD_TEXT_MAX];
                    world_flawed_answer(&it, flaws[k], (uint64_t)i, bad, sizeof bad);
                    if (world_verify(it.prompt, bad, &v, &err) || !(v.flaws & flaws[k]) ||
                        (flaws[k] == WORLD_FLAW_WRONG ? v.correct : !v.correct) || v.reward >= 1.0) {
                        if (bad_flaw[k]++ < 2)
                            fprintf(stderr, "  %s flaw %u: \"%s\" -> \"%s\": correct %d flaws %u reward %.2f\n", name,
                                    flaws[k], it.prompt, bad, v.correct, v.flaws, v.reward);
                    }
                }
                /* the endless answer starts with the right answer and goes on to another turn */
                char endless[4 * WORLD_TEXT_MAX];
                world_flawed_answer(&it, WORLD_FLAW_ENDLESS, (uint64_t)i, endless, sizeof endless);
                if (strncmp(endless, it.answer, strlen(it.answer)) != 0 || !strstr(endless, "\nUser: ")) bad_flaw[3]++;
            }
        CHECK(bad_make == 0, "%s: instances are deterministic (%d bad)", name, bad_make);
        CHECK(bad_family == 0, "%s: every prompt parses back as its family (%d bad)", name, bad_family);
        CHECK(bad_verify == 0, "%s: every reference answer verifies correct and flawless (%d bad)", name, bad_verify);
        CHECK(bad_flaw[0] == 0, "%s: wrong answers are caught (%d missed)", name, bad_flaw[0]);
        CHECK(bad_flaw[1] == 0, "%s: rambling answers are flagged (%d missed)", name, bad_flaw[1]);
        CHECK(bad_flaw[2] == 0, "%s: rude answers are flagged (%d missed)", name, bad_flaw[2]);
        CHECK(bad_flaw[3] == 0, "%s: endless answers continue with another turn (%d bad)", name, bad_flaw[3]);
        CHECK(distinct_starts >= 2, "%s: several phrasings (%d)", name, distinct_starts);
        /* the test split is wide enough that a family's accuracy is not a handful of prompts */
        char **test = prompts[2] + (size_t)f * N_ITEMS;
        char *sorted[N_ITEMS];
        int n_test = 0, distinct_test = 0;
        for (int i = 0; i < N_ITEMS; i++)
            if (test[i]) sorted[n_test++] = test[i];
        qsort(sorted, (size_t)n_test, sizeof *sorted, cmp_str);
        for (int i = 0; i < n_test; i++) distinct_test += i == 0 || strcmp(sorted[i], sorted[i - 1]) != 0;
        CHECK(distinct_test >= 20, "%s: at least 20 distinct test prompts in %d instances (%d)", name, N_ITEMS, distinct_test);
    }
    /* no prompt in two splits */
    size_t total = 0;
    char **all = calloc(3 * (size_t)F * N_ITEMS, sizeof(char *));
    int *which = calloc(3 * (size_t)F * N_ITEMS, sizeof(int));
    for (int s = 0; s < 3; s++)
        for (size_t i = 0; i < (size_t)F * N_ITEMS; i++)
            if (prompts[s][i]) all[total++] = prompts[s][i];
    (void)which;
    qsort(all, total, sizeof *all, cmp_str);
    size_t shared = 0;
    for (int s = 0; s < 3; s++)
        for (int t = s + 1; t < 3; t++)
            for (size_t i = 0; i < (size_t)F * N_ITEMS; i++) {
                const char *p = prompts[s][i];
                if (!p) continue;
                for (size_t j = 0; j < (size_t)F * N_ITEMS; j++)
                    if (prompts[t][j] && strcmp(p, prompts[t][j]) == 0) {
                        shared++;
                        break;
                    }
            }
    CHECK(shared == 0, "train, val and test share no prompt (%zu shared)", shared);
    size_t distinct = total ? 1 : 0;
    for (size_t i = 1; i < total; i++) distinct += strcmp(all[i], all[i - 1]) != 0;
    fprintf(stderr, "%zu instances, %zu distinct prompts\n", total, distinct);
    /* not a world prompt: a clear refusal */
    world_verdict v;
    CHECK(world_verify("Write a poem about the sea.", "Waves.", &v, &err) == RLHF_ERR_INVALID &&
              strstr(err.msg, "not a task-world prompt"),
          "a prompt from outside the world is refused: %s", err.msg);
    CHECK(world_prompt_family("What is 3 plus four?") < 0, "a near-miss prompt is not the world's");
    /* answers from a model: formats the verifier reads */
    CHECK(world_verify("What is 12 plus 30?", "The answer is 42.", &v, &err) == 0 && v.correct, "add 12+30=42");
    CHECK(world_verify("What is 12 plus 30?", "42", &v, &err) == 0 && v.correct, "a bare number is read");
    CHECK(world_verify("What is 12 plus 30?", "The answer is 41. It is 42.", &v, &err) == 0 && !v.correct,
          "only the first sentence counts");
    CHECK(world_verify("Is this message spam or not spam? Can we meet for lunch tomorrow", "Not spam.", &v, &err) == 0 &&
              v.correct && strcmp(v.got, "not spam") == 0,
          "\"not spam\" is read as not spam, not as spam");
    /* stories */
    char a[1024], b[1024], c[1024];
    world_story(5, a, sizeof a);
    world_story(5, b, sizeof b);
    world_story(6, c, sizeof c);
    CHECK(strcmp(a, b) == 0 && strcmp(a, c) != 0 && strlen(a) > 40, "stories are seeded: \"%s\"", a);
    for (int s = 0; s < 3; s++) {
        for (size_t i = 0; i < (size_t)F * N_ITEMS; i++) free(prompts[s][i]);
        free(prompts[s]);
    }
    free(all);
    free(which);
    return test_finish("world");
}
