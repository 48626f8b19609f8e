/* dataset.c — growable arrays of preference pairs and SFT examples (see dataset.h). */
#include "src/train/dataset.h"

#include <stdlib.h>
#include <string.h>

/* strdup that keeps NULL as NULL; *failed is set when a non-NULL string could not be copied. */
static char *copy_or_null(const char *s, int *failed) {
    if (!s) return NULL;
    char *c = strdup(s);
    if (!c) *failed = 1;
    return c;
}

/* Makes room for one more element of `size` bytes in *items (capacity doubles). */
static int grow(void **items, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return 0;
    size_t new_cap = *cap ? *cap * 2 : 64;
    void *p = realloc(*items, new_cap * size);
    if (!p) return -1;
    *items = p;
    *cap = new_cap;
    return 0;
}

void pref_dataset_init(pref_dataset *d) { memset(d, 0, sizeof *d); }

static void pref_pair_free(pref_pair *p) {
    free(p->prompt);
    free(p->prompt_messages);
    free(p->chosen);
    free(p->rejected);
    free(p->annotator);
}

void pref_dataset_free(pref_dataset *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) pref_pair_free(&d->pairs[i]);
    free(d->pairs);
    memset(d, 0, sizeof *d);
}

int pref_dataset_push(pref_dataset *d, const char *prompt, const char *prompt_messages,
                      const char *chosen, const char *rejected, double weight, double margin,
                      const char *annotator, int64_t id, rlhf_error *err) {
    void *items = d->pairs;
    if (grow(&items, &d->cap, d->n, sizeof *d->pairs) != 0)
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "preference dataset: out of memory at %zu pairs", d->n);
    d->pairs = items;
    int failed = 0;
    pref_pair p = {
        .prompt = copy_or_null(prompt ? prompt : "", &failed),
        .prompt_messages = copy_or_null(prompt_messages, &failed),
        .chosen = copy_or_null(chosen ? chosen : "", &failed),
        .rejected = copy_or_null(rejected ? rejected : "", &failed),
        .weight = weight,
        .margin = margin,
        .annotator = copy_or_null(annotator, &failed),
        .id = id,
    };
    if (failed) {
        pref_pair_free(&p);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "preference dataset: out of memory at %zu pairs", d->n);
    }
    d->pairs[d->n++] = p;
    return 0;
}

void sft_dataset_init(sft_dataset *d) { memset(d, 0, sizeof *d); }

static void sft_example_free(sft_example *e) {
    free(e->prompt);
    free(e->prompt_messages);
    free(e->completion);
}

void sft_dataset_free(sft_dataset *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) sft_example_free(&d->examples[i]);
    free(d->examples);
    memset(d, 0, sizeof *d);
}

int sft_dataset_push(sft_dataset *d, const char *prompt, const char *prompt_messages,
                     const char *completion, double weight, int64_t id, rlhf_error *err) {
    void *items = d->examples;
    if (grow(&items, &d->cap, d->n, sizeof *d->examples) != 0)
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "SFT dataset: out of memory at %zu examples", d->n);
    d->examples = items;
    int failed = 0;
    sft_example e = {
        .prompt = copy_or_null(prompt ? prompt : "", &failed),
        .prompt_messages = copy_or_null(prompt_messages, &failed),
        .completion = copy_or_null(completion ? completion : "", &failed),
        .weight = weight,
        .id = id,
    };
    if (failed) {
        sft_example_free(&e);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "SFT dataset: out of memory at %zu examples", d->n);
    }
    d->examples[d->n++] = e;
    return 0;
}

void kto_dataset_init(kto_dataset *d) { memset(d, 0, sizeof *d); }

static void kto_example_free(kto_example *e) {
    free(e->prompt);
    free(e->prompt_messages);
    free(e->completion);
}

void kto_dataset_free(kto_dataset *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n; i++) kto_example_free(&d->examples[i]);
    free(d->examples);
    memset(d, 0, sizeof *d);
}

int kto_dataset_push(kto_dataset *d, const char *prompt, const char *prompt_messages,
                     const char *completion, int desirable, int64_t id, long line, rlhf_error *err) {
    void *items = d->examples;
    if (grow(&items, &d->cap, d->n, sizeof *d->examples) != 0)
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "KTO dataset: out of memory at %zu examples", d->n);
    d->examples = items;
    int failed = 0;
    kto_example e = {
        .prompt = copy_or_null(prompt ? prompt : "", &failed),
        .prompt_messages = copy_or_null(prompt_messages, &failed),
        .completion = copy_or_null(completion ? completion : "", &failed),
        .desirable = desirable != 0,
        .id = id,
        .line = line,
    };
    if (failed) {
        kto_example_free(&e);
        return rlhf_errorf(err, RLHF_ERR_NOMEM, "KTO dataset: out of memory at %zu examples", d->n);
    }
    d->examples[d->n++] = e;
    return 0;
}

int kto_dataset_from_pairs(kto_dataset *out, const pref_dataset *pairs, rlhf_error *err) {
    for (size_t i = 0; i < pairs->n; i++) {
        const pref_pair *p = &pairs->pairs[i];
        int rc = kto_dataset_push(out, p->prompt, p->prompt_messages, p->chosen, 1, p->id, 0, err);
        if (!rc) rc = kto_dataset_push(out, p->prompt, p->prompt_messages, p->rejected, 0, p->id, 0, err);
        if (rc) return rc;
    }
    return RLHF_OK;
}
