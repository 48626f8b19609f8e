/* pair_check.c — empty sides and leaking special tokens (see pair_check.h). */
#include "feedback/pair_check.h"

#include <stdio.h>
#include <string.h>

/* Special tokens and chat-template markers of the common model families; none of them belongs
 * in a response a person judged, and a reward model trained on them learns the template. */
static const char *const k_leaks[] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|eot_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|begin_of_text|>", "<|end_of_text|>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|end|>", "<|pad|>", "<start_of_turn>", "<end_of_turn>", "[INST]",
    "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>", "<unk>", "<pad>", "\n\nHuman:",
    "\n\nAssistant:",
};

/* A response that opens with another speaker's role marker is the model writing the next turn. */
static const char *const k_role_openers[] = {"Human:", "Assistant:"};

const char *pair_check_leak(const char *text) {
    if (!text) return NULL;
    const char *found = NULL, *at = NULL; /* report the marker that comes first in the text */
    for (size_t i = 0; i < sizeof k_leaks / sizeof k_leaks[0]; i++) {
        const char *hit = strstr(text, k_leaks[i]);
        if (hit && (!at || hit < at)) {
            at = hit;
            found = k_leaks[i];
        }
    }
    if (found) return found;
    const char *p = text;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    for (size_t i = 0; i < sizeof k_role_openers / sizeof k_role_openers[0]; i++)
        if (strncmp(p, k_role_openers[i], strlen(k_role_openers[i])) == 0) return k_role_openers[i];
    return NULL;
}

static void append(char *buf, size_t size, const char *sep, const char *text) {
    if (!buf || !size) return;
    size_t used = strlen(buf);
    if (used + 1 >= size) return;
    snprintf(buf + used, size - used, "%s%s", used ? sep : "", text);
}

/* Shows control characters of a marker readably in a message ("\n\nHuman:" -> "\\n\\nHuman:"). */
static void printable(const char *s, char *out, size_t size) {
    size_t n = 0;
    for (; *s && n + 3 < size; s++) {
        if (*s == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *s;
        }
    }
    out[n] = '\0';
}

int pair_check_text(const char *text, const char *label, const char *tag, char *reason,
                    size_t reason_size, char *flags, size_t flags_size) {
    int issues = 0;
    char msg[160];
    const char *p = text ? text : "";
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == '\v' || *p == '\f') p++;
    if (!*p) {
        issues |= PAIR_CHECK_EMPTY;
        snprintf(msg, sizeof msg, "%s is empty", label);
        append(reason, reason_size, "; ", msg);
        snprintf(msg, sizeof msg, "empty:%s", tag);
        append(flags, flags_size, ",", msg);
    }
    const char *leak = pair_check_leak(text);
    if (leak) {
        char shown[64];
        printable(leak, shown, sizeof shown);
        issues |= PAIR_CHECK_LEAK;
        snprintf(msg, sizeof msg, "%s leaks template text \"%s\"", label, shown);
        append(reason, reason_size, "; ", msg);
        snprintf(msg, sizeof msg, "leak:%s", tag);
        append(flags, flags_size, ",", msg);
    }
    return issues;
}

int pair_check_identical(const char *a, const char *b) {
    return a && b && strcmp(a, b) == 0;
}
