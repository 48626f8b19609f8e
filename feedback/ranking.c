/* ranking.c — parsing, normalising and expanding rankings into pairs (see ranking.h). */
#include "feedback/ranking.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int ranking_normalize(int *ranks, int k, rlhf_error *err) {
    if (k < 2 || k > RANKING_MAX_ITEMS)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "a ranking needs 2 to %d candidates (got %d)",
                           RANKING_MAX_ITEMS, k);
    for (int i = 0; i < k; i++)
        if (ranks[i] < 1)
            return rlhf_errorf(err, RLHF_ERR_INVALID, "rank %d of candidate %c is not >= 1", ranks[i], 'A' + i);
    /* dense rank = 1 + number of distinct values below this one; O(k^3) for k <= 26 is nothing */
    int dense[RANKING_MAX_ITEMS];
    for (int i = 0; i < k; i++) {
        int below = 0;
        for (int j = 0; j < k; j++) {
            if (ranks[j] >= ranks[i]) continue;
            int first = 1; /* count each distinct smaller value once */
            for (int m = 0; m < j; m++)
                if (ranks[m] == ranks[j]) first = 0;
            below += first;
        }
        dense[i] = below + 1;
    }
    memcpy(ranks, dense, (size_t)k * sizeof *ranks);
    return 0;
}

int ranking_parse(const char *spec, int k, int *ranks, rlhf_error *err) {
    if (k < 2 || k > RANKING_MAX_ITEMS)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "a ranking needs 2 to %d candidates (got %d)", RANKING_MAX_ITEMS, k);
    for (int i = 0; i < k; i++) ranks[i] = 0;
    int rank = 1, expect_label = 1, seen = 0;
    for (const char *p = spec; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c)) continue;
        if (expect_label) {
            int label = isalpha(c) ? toupper(c) - 'A' : -1;
            if (label < 0 || label >= k)
                return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking \"%s\": '%c' is not one of the candidates A..%c",
                                   spec, c, 'A' + k - 1);
            if (ranks[label])
                return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking \"%s\": %c appears twice", spec, 'A' + label);
            ranks[label] = rank;
            seen++;
            expect_label = 0;
        } else if (c == '>') {
            rank++;
            expect_label = 1;
        } else if (c == '=') {
            expect_label = 1;
        } else {
            return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking \"%s\": expected '>' or '=' but found '%c'", spec, c);
        }
    }
    if (expect_label)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking \"%s\": %s", spec,
                           seen ? "ends with '>' or '='" : "is empty");
    if (seen != k) {
        for (int i = 0; i < k; i++)
            if (!ranks[i])
                return rlhf_errorf(err, RLHF_ERR_INVALID, "ranking \"%s\": candidate %c is missing (rank all %d)",
                                   spec, 'A' + i, k);
    }
    return 0;
}

void ranking_format(const int *ranks, int k, char *buf, size_t size) {
    size_t used = 0;
    if (size) buf[0] = '\0';
    int max_rank = 0;
    for (int i = 0; i < k; i++)
        if (ranks[i] > max_rank) max_rank = ranks[i];
    for (int r = 1; r <= max_rank; r++) {
        int first_in_rank = 1;
        for (int i = 0; i < k; i++) {
            if (ranks[i] != r) continue;
            const char *sep = first_in_rank ? (used ? " > " : "") : " = ";
            int n = snprintf(buf + used, used < size ? size - used : 0, "%s%c", sep,
                             i < RANKING_MAX_ITEMS ? 'A' + i : '?');
            if (n > 0) used += (size_t)n;
            first_in_rank = 0;
        }
    }
}

size_t ranking_derive_pairs(const int *ranks, int k, ranking_pair *out, size_t *n_tied) {
    size_t n = 0, tied = 0;
    for (int i = 0; i < k; i++) {
        for (int j = i + 1; j < k; j++) {
            if (ranks[i] == ranks[j]) {
                tied++;
                continue;
            }
            int better = ranks[i] < ranks[j] ? i : j, worse = better == i ? j : i;
            out[n++] = (ranking_pair){better, worse, ranks[worse] - ranks[better]};
        }
    }
    if (n_tied) *n_tied = tied;
    return n;
}
