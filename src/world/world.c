/* world.c — the task world: families, their phrasings, answers and verifiers (see world.h). */
#include "src/world/world.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/core/rng.h"

/* ---- word lists (written for this project) ---- */

static const char *const k_words[] = {
    "apple", "garden", "river", "candle", "pencil", "window", "rabbit", "orange", "silver", "dragon",
    "basket", "castle", "forest", "ladder", "marble", "pepper", "rocket", "tunnel", "violin", "yellow",
    "anchor", "banana", "cookie", "summer", "winter", "planet", "button", "mirror", "puzzle", "helmet",
    "kitten", "lemon", "cloud", "stone", "bread", "chair", "grape", "horse", "music", "ocean",
    "bottle", "carpet", "dinner", "engine", "finger", "guitar", "hammer", "island", "jacket", "kettle",
    "letter", "monkey", "needle", "parrot", "pillow", "saddle", "tomato", "wallet", "zipper", "turtle",
};
#define N_WORDS (int)(sizeof k_words / sizeof *k_words)

typedef struct {
    const char *country, *capital;
} capital_row;
static const capital_row k_capitals[] = {
    {"France", "Paris"},     {"Spain", "Madrid"},     {"Italy", "Rome"},        {"Germany", "Berlin"},
    {"Japan", "Tokyo"},      {"Egypt", "Cairo"},      {"Canada", "Ottawa"},     {"Kenya", "Nairobi"},
    {"Peru", "Lima"},        {"Norway", "Oslo"},      {"Greece", "Athens"},     {"Poland", "Warsaw"},
    {"Chile", "Santiago"},   {"Cuba", "Havana"},      {"Ireland", "Dublin"},    {"Austria", "Vienna"},
    {"Portugal", "Lisbon"},  {"Sweden", "Stockholm"}, {"Thailand", "Bangkok"},  {"Argentina", "Buenos Aires"},
    {"Russia", "Moscow"},    {"China", "Beijing"},    {"India", "New Delhi"},   {"Mexico", "Mexico City"},
    {"Turkey", "Ankara"},    {"Finland", "Helsinki"}, {"Denmark", "Copenhagen"}, {"Hungary", "Budapest"},
    {"Belgium", "Brussels"}, {"Vietnam", "Hanoi"},
};
#define N_CAPITALS (int)(sizeof k_capitals / sizeof *k_capitals)

typedef struct {
    const char *en, *fr, *es;
} dict_row;
static const dict_row k_dict[] = {
    {"cat", "chat", "gato"},     {"dog", "chien", "perro"},  {"house", "maison", "casa"},
    {"water", "eau", "agua"},    {"bread", "pain", "pan"},   {"book", "livre", "libro"},
    {"sun", "soleil", "sol"},    {"moon", "lune", "luna"},   {"tree", "arbre", "arbol"},
    {"apple", "pomme", "manzana"}, {"red", "rouge", "rojo"}, {"green", "vert", "verde"},
    {"friend", "ami", "amigo"},  {"school", "ecole", "escuela"}, {"milk", "lait", "leche"},
    {"car", "voiture", "coche"}, {"sea", "mer", "mar"},      {"night", "nuit", "noche"},
    {"day", "jour", "dia"},      {"bird", "oiseau", "pajaro"}, {"fish", "poisson", "pez"},
    {"door", "porte", "puerta"}, {"hand", "main", "mano"},   {"flower", "fleur", "flor"},
    {"city", "ville", "ciudad"}, {"rain", "pluie", "lluvia"}, {"snow", "neige", "nieve"},
    {"black", "noir", "negro"},  {"white", "blanc", "blanco"}, {"horse", "cheval", "caballo"},
};
#define N_DICT (int)(sizeof k_dict / sizeof *k_dict)

static const char *const k_nouns[] = {"food", "service", "room", "movie", "book", "music", "staff", "coffee", "view", "game"};
static const char *const k_pos_adj[] = {"wonderful", "excellent", "delightful", "great", "superb", "lovely", "fantastic"};
static const char *const k_neg_adj[] = {"terrible", "awful", "boring", "horrible", "disappointing", "dreadful", "poor"};
static const char *const k_spam_lines[] = {
    "WIN a FREE prize now, click the link", "Claim your free gift card today only", "You have won a cash prize, reply now",
    "Cheap loans approved instantly, click here", "Free vacation offer, act now to win", "Urgent: claim your prize money today",
    "You won a free phone, click to collect", "Exclusive offer just for you, claim it now", "Cash bonus waiting, click the link",
    "Get free coins in our game, win big",
};
static const char *const k_ham_lines[] = {
    "Can we meet for lunch tomorrow", "The meeting moved to three o'clock", "Thanks for the notes from class",
    "Please bring the blue folder on Monday", "Dinner is at my place on Friday", "I left your umbrella at the office",
    "The train was late again this morning", "Could you call me back after work", "Your package arrived at the front desk",
    "See you at the library at noon",
};
#define N_SPAM_LINES (int)(sizeof k_spam_lines / sizeof *k_spam_lines)
#define N_HAM_LINES (int)(sizeof k_ham_lines / sizeof *k_ham_lines)
/* Words only spam carries and the verifier reads (every spam line has at least one). */
static const char *const k_spam_markers[] = {"free", "win", "won", "prize", "click", "cash", "loans", "offer", "claim"};
static const char *const k_rude[] = {"stupid", "idiot", "dumb", "pathetic", "shut up", "moron"};
static const char *const k_polite[] = {"thank", "thanks", "glad", "happy", "hello", "hi", "hey", "nice", "pleasure", "welcome", "greetings", "good", "well"};
/* chit-chat: a greeting (to one of 10 names or none) and a question, 8 x 11 x 8 prompts (so the splits can be disjoint) */
static const char *const k_greet[] = {"Hello!", "Hi there.", "Good morning!", "Hey!", "Good evening.", "Greetings!",
                                     "Good afternoon.", "Hi!"};
static const char *const k_greet_reply[] = {"Hello!", "Hi!", "Good morning!", "Hey!", "Good evening!", "Greetings!",
                                           "Good afternoon!", "Hi!"};
static const char *const k_question[] = {
    "How are you today?", "Did you sleep well?", "Nice to meet you.", "Thank you for your help earlier.",
    "How is your day going?", "What's up?", "I hope you are well.", "Can we talk for a minute?",
};
static const char *const k_question_reply[] = {
    "I am doing well, thank you for asking.", "I did, thank you. I hope you slept well too.",
    "It is nice to meet you too.", "You are welcome, I was happy to help.",
    "It is going well, thank you. How can I help?", "Not much. I am happy to chat with you.",
    "I am well, thank you. I hope you are too.", "Of course, I am happy to talk. What is on your mind?",
};
static const char *const k_filler[] = {
    "I hope this helps you with whatever you are working on today.",
    "People have thought about questions like this for a very long time.",
    "There are many other interesting things one could say about this as well.",
    "Let me also add that it is always good to double check your work carefully.",
    "By the way, the weather has been quite pleasant lately, has it not?",
    "In any case, learning new things every day is a wonderful habit to have.",
};
static const char *const k_rude_prefix[] = {
    "That is a stupid question.", "Ugh, what a dumb thing to ask.", "Only an idiot would not know this.",
};

/* ---- templates: literal text with {slot} markers; rendering and parsing ---- */

#define MAX_SLOTS 4
#define SLOT_MAX 256

typedef struct {
    char name[MAX_SLOTS][8];
    char value[MAX_SLOTS][SLOT_MAX];
    int n;
} slots;

static void slots_set(slots *s, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void slots_set(slots *s, const char *name, const char *fmt, ...) {
    int i = 0;
    while (i < s->n && strcmp(s->name[i], name) != 0) i++;
    if (i == s->n) {
        if (s->n == MAX_SLOTS) return;
        snprintf(s->name[s->n++], sizeof s->name[0], "%s", name);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->value[i], SLOT_MAX, fmt, ap);
    va_end(ap);
}

static const char *slots_get(const slots *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return s->value[i];
    return "";
}

static void render(const char *tmpl, const slots *s, char *out, size_t size) {
    size_t o = 0;
    for (const char *p = tmpl; *p && o + 1 < size;) {
        if (*p == '{') {
            const char *e = strchr(p, '}');
            char name[8] = "";
            if (e && (size_t)(e - p - 1) < sizeof name) memcpy(name, p + 1, (size_t)(e - p - 1));
            const char *v = slots_get(s, name);
            while (*v && o + 1 < size) out[o++] = *v++;
            p = e ? e + 1 : p + strlen(p);
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
}

/* Matches text against a template; slots take the text up to the next literal part (the last
 * slot up to the template's final literal). Returns 1 and fills s on a match. */
static int parse(const char *tmpl, const char *text, slots *s) {
    memset(s, 0, sizeof *s);
    const char *p = tmpl, *t = text;
    while (*p) {
        if (*p != '{') {
            if (*p != *t) return 0;
            p++;
            t++;
            continue;
        }
        const char *e = strchr(p, '}');
        if (!e || s->n == MAX_SLOTS) return 0;
        char name[8] = "";
        if ((size_t)(e - p - 1) >= sizeof name) return 0;
        memcpy(name, p + 1, (size_t)(e - p - 1));
        p = e + 1;
        /* the literal that follows, up to the next slot */
        size_t lit = strcspn(p, "{");
        const char *end;
        if (lit == 0) {
            end = t + strlen(t);
        } else {
            /* the last occurrence when the literal ends the template, else the first */
            char litbuf[128];
            if (lit >= sizeof litbuf) return 0;
            memcpy(litbuf, p, lit);
            litbuf[lit] = 0;
            end = strstr(t, litbuf);
            if (p[lit] == 0)
                for (const char *q = end; q; q = strstr(q + 1, litbuf)) end = q;
            if (!end) return 0;
        }
        size_t n = (size_t)(end - t);
        if (n == 0 || n >= SLOT_MAX) return 0;
        snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
        memcpy(s->value[s->n], t, n);
        s->value[s->n][n] = 0;
        s->n++;
        t = end;
    }
    return *t == 0;
}

/* ---- families ---- */

typedef struct family_def family_def;
struct family_def {
    const char *name;
    const char *const *phrasings; /* NULL-terminated */
    const char *const *labels;    /* classification families */
    /* draws the slots of an instance */
    void (*draw)(rng_t *r, slots *s);
    /* the right answer's key (a number, a word, a label) from the slots; 0 if the slots are not
     * a valid instance */
    int (*solve)(const slots *s, char *key, size_t size);
    /* the good response for the key */
    void (*respond)(const slots *s, const char *key, char *out, size_t size);
    /* a wrong key */
    void (*wrong)(const slots *s, const char *key, rng_t *r, char *out, size_t size);
    /* what a response answers (its key), from its first sentence */
    int (*read)(const char *sentence, char *key, size_t size);
};

static int to_int(const char *s, long *out) {
    char *e;
    long v = strtol(s, &e, 10);
    if (e == s || *e) return 0;
    *out = v;
    return 1;
}

/* The last integer of a sentence (numeric answers: "The answer is 42."). */
static int read_last_int(const char *s, char *key, size_t size) {
    const char *last = NULL;
    for (const char *p = s; *p; p++)
        if (isdigit((unsigned char)*p) && (p == s || !isdigit((unsigned char)p[-1]))) last = p;
    if (!last) return 0;
    int neg = last > s && last[-1] == '-';
    snprintf(key, size, "%s%ld", neg ? "-" : "", strtol(last, NULL, 10));
    return 1;
}

/* Every integer of a sentence, as "a, b, c". */
static int read_int_list(const char *s, char *key, size_t size) {
    size_t o = 0;
    int n = 0;
    key[0] = 0;
    for (const char *p = s; *p; p++)
        if (isdigit((unsigned char)*p) && (p == s || !isdigit((unsigned char)p[-1]))) {
            o += (size_t)snprintf(key + o, o < size ? size - o : 0, "%s%ld", n ? ", " : "", strtol(p, NULL, 10));
            n++;
        }
    return n > 0 && o < size;
}

/* Lower-cased words of a sentence joined by single spaces (letters, digits, apostrophes). */
static void normalise(const char *s, char *out, size_t size) {
    size_t o = 0;
    int space = 1;
    for (const char *p = s; *p && o + 1 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '\'' || c >= 0x80) {
            out[o++] = (char)tolower(c);
            space = 0;
        } else if (!space) {
            out[o++] = ' ';
            space = 1;
        }
    }
    while (o > 0 && out[o - 1] == ' ') o--;
    out[o] = 0;
}

/* A whole word (or phrase) in a normalised text. */
static int has_word(const char *norm, const char *word) {
    char w[SLOT_MAX];
    normalise(word, w, sizeof w);
    size_t n = strlen(w);
    if (!n) return 0;
    for (const char *p = strstr(norm, w); p; p = strstr(p + 1, w))
        if ((p == norm || p[-1] == ' ') && (p[n] == 0 || p[n] == ' ')) return 1;
    return 0;
}

/* add */
static const char *const k_add_ph[] = {"What is {a} plus {b}?", "Add {a} and {b}.", "Compute {a} + {b}.", "What do you get when you add {a} to {b}?",
                                       "What is the sum of {a} and {b}?", NULL};
static void add_draw(rng_t *r, slots *s) {
    /* small operands: a model of a few million weights can learn these sums from its data */
    slots_set(s, "a", "%d", (int)rng_below(r, 20));
    slots_set(s, "b", "%d", (int)rng_below(r, 20));
}
static int add_solve(const slots *s, char *key, size_t size) {
    long a, b;
    if (!to_int(slots_get(s, "a"), &a) || !to_int(slots_get(s, "b"), &b)) return 0;
    snprintf(key, size, "%ld", a + b);
    return 1;
}
static void num_respond(const slots *s, const char *key, char *out, size_t size) {
    (void)s;
    snprintf(out, size, "The answer is %s.", key);
}
static void num_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)s;
    long v = strtol(key, NULL, 10), d = 1 + (long)rng_below(r, 5);
    snprintf(out, size, "%ld", rng_below(r, 2) && v - d >= 0 ? v - d : v + d);
}

/* compare */
static const char *const k_cmp_ph[] = {"Which is larger, {a} or {b}?", "Of {a} and {b}, which number is bigger?",
                                       "Which number is greater: {a} or {b}?", "Pick the bigger number, {a} or {b}.", NULL};
static void cmp_draw(rng_t *r, slots *s) {
    int a = (int)rng_below(r, 100), b;
    do b = (int)rng_below(r, 100);
    while (b == a);
    slots_set(s, "a", "%d", a);
    slots_set(s, "b", "%d", b);
}
static int cmp_solve(const slots *s, char *key, size_t size) {
    long a, b;
    if (!to_int(slots_get(s, "a"), &a) || !to_int(slots_get(s, "b"), &b) || a == b) return 0;
    snprintf(key, size, "%ld", a > b ? a : b);
    return 1;
}
static void cmp_respond(const slots *s, const char *key, char *out, size_t size) {
    (void)s;
    snprintf(out, size, "%s is larger.", key);
}
static void cmp_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)r;
    const char *a = slots_get(s, "a");
    snprintf(out, size, "%s", strcmp(a, key) == 0 ? slots_get(s, "b") : a);
}

/* count_letter */
static const char *const k_cnt_ph[] = {"How many times does the letter {l} appear in {w}?",
                                       "Count the letter {l} in the word {w}.",
                                       "In the word {w}, how often does {l} occur?", NULL};
static void cnt_draw(rng_t *r, slots *s) {
    const char *w = k_words[rng_below(r, N_WORDS)];
    char l = rng_below(r, 4) ? w[rng_below(r, strlen(w))] : (char)('a' + rng_below(r, 26));
    slots_set(s, "l", "%c", l);
    slots_set(s, "w", "%s", w);
}
static int cnt_solve(const slots *s, char *key, size_t size) {
    const char *l = slots_get(s, "l"), *w = slots_get(s, "w");
    if (strlen(l) != 1 || !*w) return 0;
    int n = 0;
    for (const char *p = w; *p; p++) n += *p == l[0];
    snprintf(key, size, "%d", n);
    return 1;
}
static void cnt_respond(const slots *s, const char *key, char *out, size_t size) {
    snprintf(out, size, "The letter %s appears %s %s.", slots_get(s, "l"), key, strcmp(key, "1") ? "times" : "time");
}

/* word answers: the response's first sentence holds the word */
static int read_sentence(const char *s, char *key, size_t size) {
    normalise(s, key, size);
    return key[0] != 0;
}
static void word_respond(const slots *s, const char *key, char *out, size_t size) {
    (void)s;
    snprintf(out, size, "%s.", key);
}

/* reverse */
static const char *const k_rev_ph[] = {"Reverse the word {w}.", "Write {w} backwards.", "Spell {w} in reverse order.",
                                       "What is {w} written from right to left?", NULL};
static void word_draw(rng_t *r, slots *s) { slots_set(s, "w", "%s", k_words[rng_below(r, N_WORDS)]); }
static int rev_solve(const slots *s, char *key, size_t size) {
    const char *w = slots_get(s, "w");
    size_t n = strlen(w);
    if (!n || n >= size) return 0;
    for (size_t i = 0; i < n; i++) key[i] = w[n - 1 - i];
    key[n] = 0;
    return 1;
}
static void word_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)s;
    /* two letters swapped */
    snprintf(out, size, "%s", key);
    size_t n = strlen(out);
    if (n >= 2) {
        size_t i = rng_below(r, n - 1);
        char c = out[i];
        out[i] = out[i + 1];
        out[i + 1] = c;
        if (strcmp(out, key) == 0) out[0] = out[0] == 'z' ? 'a' : (char)(out[0] + 1);
    }
}

/* spell */
static const char *const k_spell_ph[] = {"Spell the word {w} with dashes between the letters.", "How do you spell {w}, letter by letter?",
                                         "Write out the letters of {w} one by one.", "Spell out {w}.",
                                         "What are the letters of {w}?", NULL};
static int spell_solve(const slots *s, char *key, size_t size) {
    const char *w = slots_get(s, "w");
    size_t o = 0;
    for (const char *p = w; *p && o + 3 < size; p++) {
        if (p != w) key[o++] = '-';
        key[o++] = *p;
    }
    key[o] = 0;
    return o > 0;
}
/* "a-p-p-l-e" survives normalise as "a p p l e": compare letters only */
static int read_letters(const char *s, char *key, size_t size) {
    size_t o = 0;
    for (const char *p = s; *p && o + 3 < size; p++)
        if (isalpha((unsigned char)*p)) {
            if (o) key[o++] = '-';
            key[o++] = (char)tolower((unsigned char)*p);
        }
    key[o] = 0;
    return o > 0;
}
static void spell_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    /* a letter left out */
    (void)s;
    size_t n = strlen(key), drop = 2 * rng_below(r, (n + 1) / 2);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        if (i == drop || (i == drop + 1 && drop + 1 < n && key[i] == '-')) continue;
        out[o++] = key[i];
    }
    if (o && out[o - 1] == '-') o--;
    out[o] = 0;
}

/* sort */
static const char *const k_sort_ph[] = {"Sort from smallest to largest: {list}.", "Put these numbers in order: {list}.",
                                        "Arrange in increasing order: {list}.", NULL};
static void sort_draw(rng_t *r, slots *s) {
    int n = 3 + (int)rng_below(r, 2);
    char buf[SLOT_MAX];
    size_t o = 0;
    for (int i = 0; i < n; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d", i ? ", " : "", (int)rng_below(r, 50));
    slots_set(s, "list", "%s", buf);
}
static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}
static int parse_list(const char *s, long *v, int max) {
    int n = 0;
    for (const char *p = s; *p;) {
        char *e;
        long x = strtol(p, &e, 10);
        if (e == p || n == max) return -1;
        v[n++] = x;
        p = e;
        if (*p == ',') p++;
        while (*p == ' ') p++;
    }
    return n;
}
static int sort_solve(const slots *s, char *key, size_t size) {
    long v[16];
    int n = parse_list(slots_get(s, "list"), v, 16);
    if (n < 2) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_long);
    size_t o = 0;
    for (int i = 0; i < n; i++) o += (size_t)snprintf(key + o, o < size ? size - o : 0, "%s%ld", i ? ", " : "", v[i]);
    return o < size;
}
static void list_respond(const slots *s, const char *key, char *out, size_t size) {
    (void)s;
    snprintf(out, size, "%s.", key);
}
static void sort_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)r;
    /* the list as given (or reversed when it was already sorted) */
    snprintf(out, size, "%s", slots_get(s, "list"));
    if (strcmp(out, key) == 0) {
        long v[16];
        int n = parse_list(key, v, 16);
        size_t o = 0;
        for (int i = n - 1; i >= 0; i--) o += (size_t)snprintf(out + o, o < size ? size - o : 0, "%s%ld", i < n - 1 ? ", " : "", v[i]);
    }
}

/* sequence */
static const char *const k_seq_ph[] = {"Continue the sequence: {list}, ...", "What number comes next: {list}?",
                                       "Find the next number in {list}.", NULL};
static void seq_draw(rng_t *r, slots *s) {
    int a = (int)rng_below(r, 20), d = 1 + (int)rng_below(r, 9), n = 4;
    char buf[SLOT_MAX];
    size_t o = 0;
    for (int i = 0; i < n; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%d", i ? ", " : "", a + i * d);
    slots_set(s, "list", "%s", buf);
}
static int seq_solve(const slots *s, char *key, size_t size) {
    long v[16];
    int n = parse_list(slots_get(s, "list"), v, 16);
    if (n < 3) return 0;
    long d = v[1] - v[0];
    for (int i = 2; i < n; i++)
        if (v[i] - v[i - 1] != d) return 0;
    snprintf(key, size, "%ld", v[n - 1] + d);
    return 1;
}
static void seq_respond(const slots *s, const char *key, char *out, size_t size) {
    (void)s;
    snprintf(out, size, "The next number is %s.", key);
}

/* capital */
static const char *const k_cap_ph[] = {"What is the capital of {w}?", "Name the capital city of {w}.", "Which city is the capital of {w}?",
                                       "Tell me the capital of {w}.", "{w} has which capital city?",
                                       "Where is the government of {w}?", "What city is {w}'s capital?", NULL};
static void cap_draw(rng_t *r, slots *s) { slots_set(s, "w", "%s", k_capitals[rng_below(r, N_CAPITALS)].country); }
static int cap_solve(const slots *s, char *key, size_t size) {
    for (int i = 0; i < N_CAPITALS; i++)
        if (strcmp(k_capitals[i].country, slots_get(s, "w")) == 0) {
            snprintf(key, size, "%s", k_capitals[i].capital);
            return 1;
        }
    return 0;
}
static void cap_respond(const slots *s, const char *key, char *out, size_t size) {
    snprintf(out, size, "The capital of %s is %s.", slots_get(s, "w"), key);
}
static void cap_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)s;
    const char *c;
    do c = k_capitals[rng_below(r, N_CAPITALS)].capital;
    while (strcmp(c, key) == 0);
    snprintf(out, size, "%s", c);
}

/* labels: the answer is the label named in the sentence (the longest label that appears wins:
 * "not spam" over "spam") */
static const char *const k_sent_labels[] = {"positive", "negative", NULL};
static const char *const k_spam_labels[] = {"spam", "not spam", NULL};
static int read_label(const char *s, const char *const *labels, char *key, size_t size) {
    char norm[WORLD_TEXT_MAX];
    normalise(s, norm, sizeof norm);
    const char *best = NULL;
    for (int i = 0; labels[i]; i++)
        if (has_word(norm, labels[i]) && (!best || strlen(labels[i]) > strlen(best))) best = labels[i];
    if (!best) return 0;
    snprintf(key, size, "%s", best);
    return 1;
}
static void label_respond(const slots *s, const char *key, char *out, size_t size) {
    (void)s;
    snprintf(out, size, "%c%s.", toupper((unsigned char)key[0]), key + 1);
}

/* sentiment */
static const char *const k_sent_ph[] = {"Is this review positive or negative? {t}", "Review: {t} Sentiment?",
                                        "Classify the sentiment of this review: {t}", NULL};
static void sent_draw(rng_t *r, slots *s) {
    int pos = (int)rng_below(r, 2);
    const char *const *adj = pos ? k_pos_adj : k_neg_adj;
    const char *n1 = k_nouns[rng_below(r, 10)], *n2 = k_nouns[rng_below(r, 10)];
    slots_set(s, "t", "The %s was %s and the %s was %s.", n1, adj[rng_below(r, 7)], n2, adj[rng_below(r, 7)]);
}
static int sent_solve(const slots *s, char *key, size_t size) {
    char norm[SLOT_MAX];
    normalise(slots_get(s, "t"), norm, sizeof norm);
    int p = 0, n = 0;
    for (int i = 0; i < 7; i++) {
        p += has_word(norm, k_pos_adj[i]);
        n += has_word(norm, k_neg_adj[i]);
    }
    if (p == n) return 0;
    snprintf(key, size, "%s", p > n ? "positive" : "negative");
    return 1;
}
static int sent_read(const char *s, char *key, size_t size) { return read_label(s, k_sent_labels, key, size); }
static void sent_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)s;
    (void)r;
    snprintf(out, size, "%s", strcmp(key, "positive") ? "positive" : "negative");
}

/* spam */
static const char *const k_spam_ph[] = {"Is this message spam or not spam? {t}", "Message: \"{t}\" Spam or not spam?",
                                        "Spam check, spam or not spam: {t}", NULL};
static void spam_draw(rng_t *r, slots *s) {
    int spam = (int)rng_below(r, 2);
    const char *line = spam ? k_spam_lines[rng_below(r, N_SPAM_LINES)] : k_ham_lines[rng_below(r, N_HAM_LINES)];
    static const char *const ends[] = {"", "!", " please", " today", ".", " now"};
    slots_set(s, "t", "%s%s", line, ends[rng_below(r, 6)]);
}
static int spam_solve(const slots *s, char *key, size_t size) {
    char norm[SLOT_MAX];
    normalise(slots_get(s, "t"), norm, sizeof norm);
    int spam = 0;
    for (size_t i = 0; i < sizeof k_spam_markers / sizeof *k_spam_markers; i++) spam |= has_word(norm, k_spam_markers[i]);
    snprintf(key, size, "%s", spam ? "spam" : "not spam");
    return 1;
}
static int spam_read(const char *s, char *key, size_t size) { return read_label(s, k_spam_labels, key, size); }
static void spam_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)s;
    (void)r;
    snprintf(out, size, "%s", strcmp(key, "spam") ? "spam" : "not spam");
}

/* translate */
static const char *const k_tr_ph[] = {"Translate {w} into {lang}.", "What is the {lang} word for {w}?", "How do you say {w} in {lang}?",
                                      "Give the {lang} for {w}.", "Say {w} in {lang}.", NULL};
static void tr_draw(rng_t *r, slots *s) {
    slots_set(s, "w", "%s", k_dict[rng_below(r, N_DICT)].en);
    slots_set(s, "lang", "%s", rng_below(r, 2) ? "French" : "Spanish");
}
static int tr_solve(const slots *s, char *key, size_t size) {
    const char *lang = slots_get(s, "lang");
    for (int i = 0; i < N_DICT; i++)
        if (strcmp(k_dict[i].en, slots_get(s, "w")) == 0) {
            if (strcmp(lang, "French") == 0) snprintf(key, size, "%s", k_dict[i].fr);
            else if (strcmp(lang, "Spanish") == 0) snprintf(key, size, "%s", k_dict[i].es);
            else return 0;
            return 1;
        }
    return 0;
}
static void tr_respond(const slots *s, const char *key, char *out, size_t size) {
    snprintf(out, size, "In %s, %s is %s.", slots_get(s, "lang"), slots_get(s, "w"), key);
}
static void tr_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)key;
    const dict_row *d;
    do d = &k_dict[rng_below(r, N_DICT)];
    while (strcmp(d->en, slots_get(s, "w")) == 0);
    snprintf(out, size, "%s", strcmp(slots_get(s, "lang"), "French") == 0 ? d->fr : d->es);
}

/* chit-chat: a polite reply is right */
static const char *const k_chit_ph[] = {"{t}", NULL};
/* the greeting, addressed to a name or not: "Hello!", "Hello, Mia!" */
static const char *const k_chat_names[] = {"", "Mia", "Tom", "Lena", "Sam", "Ada", "Ben", "Nora", "Leo", "Ivy", "Max"};
#define N_CHAT_NAMES (int)(sizeof k_chat_names / sizeof *k_chat_names)
static void chit_text(int g, int name, int q, char *out, size_t size) {
    const char *gr = k_greet[g];
    size_t n = strlen(gr);
    if (name == 0) snprintf(out, size, "%s %s", gr, k_question[q]);
    else snprintf(out, size, "%.*s, %s%c %s", (int)(n - 1), gr, k_chat_names[name], gr[n - 1], k_question[q]);
}
static void chit_draw(rng_t *r, slots *s) {
    char buf[SLOT_MAX];
    int g = (int)rng_below(r, 8), name = (int)rng_below(r, N_CHAT_NAMES), q = (int)rng_below(r, 8);
    chit_text(g, name, q, buf, sizeof buf);
    slots_set(s, "t", "%s", buf);
}
/* the (greeting, question) pair a chit-chat prompt is made of; 0 if none */
static int chit_find(const char *t, int *g, int *q) {
    char buf[SLOT_MAX];
    for (*g = 0; *g < 8; (*g)++)
        for (int name = 0; name < N_CHAT_NAMES; name++)
            for (*q = 0; *q < 8; (*q)++) {
                chit_text(*g, name, *q, buf, sizeof buf);
                if (strcmp(buf, t) == 0) return 1;
            }
    return 0;
}
static int chit_solve(const slots *s, char *key, size_t size) {
    int g, q;
    if (!chit_find(slots_get(s, "t"), &g, &q)) return 0;
    snprintf(key, size, "polite");
    return 1;
}
static void chit_respond(const slots *s, const char *key, char *out, size_t size) {
    int g, q;
    if (strcmp(key, "polite") != 0 || !chit_find(slots_get(s, "t"), &g, &q)) {
        snprintf(out, size, "Whatever. I do not care.");
        return;
    }
    snprintf(out, size, "%s %s", k_greet_reply[g], k_question_reply[q]);
}
static int chit_read(const char *s, char *key, size_t size) {
    char norm[WORLD_TEXT_MAX];
    normalise(s, norm, sizeof norm);
    int polite = 0;
    for (size_t i = 0; i < sizeof k_polite / sizeof *k_polite; i++) polite |= has_word(norm, k_polite[i]);
    snprintf(key, size, "%s", polite ? "polite" : "impolite");
    return 1;
}
static void chit_wrong(const slots *s, const char *key, rng_t *r, char *out, size_t size) {
    (void)s;
    (void)key;
    (void)r;
    snprintf(out, size, "impolite");
}

static const family_def k_families[] = {
    {"add", k_add_ph, NULL, add_draw, add_solve, num_respond, num_wrong, read_last_int},
    {"compare", k_cmp_ph, NULL, cmp_draw, cmp_solve, cmp_respond, cmp_wrong, read_last_int},
    {"count_letter", k_cnt_ph, NULL, cnt_draw, cnt_solve, cnt_respond, num_wrong, read_last_int},
    {"reverse", k_rev_ph, NULL, word_draw, rev_solve, word_respond, word_wrong, read_sentence},
    {"spell", k_spell_ph, NULL, word_draw, spell_solve, word_respond, spell_wrong, read_letters},
    {"sort", k_sort_ph, NULL, sort_draw, sort_solve, list_respond, sort_wrong, read_int_list},
    {"sequence", k_seq_ph, NULL, seq_draw, seq_solve, seq_respond, num_wrong, read_last_int},
    {"capital", k_cap_ph, NULL, cap_draw, cap_solve, cap_respond, cap_wrong, read_sentence},
    {"sentiment", k_sent_ph, k_sent_labels, sent_draw, sent_solve, label_respond, sent_wrong, sent_read},
    {"spam", k_spam_ph, k_spam_labels, spam_draw, spam_solve, label_respond, spam_wrong, spam_read},
    {"translate", k_tr_ph, NULL, tr_draw, tr_solve, tr_respond, tr_wrong, read_sentence},
    {"chitchat", k_chit_ph, NULL, chit_draw, chit_solve, chit_respond, chit_wrong, chit_read},
};
#define N_FAMILIES (int)(sizeof k_families / sizeof *k_families)

int world_family_count(void) { return N_FAMILIES; }
const char *world_family_name(int f) { return f >= 0 && f < N_FAMILIES ? k_families[f].name : NULL; }
const char *const *world_family_labels(int f) { return f >= 0 && f < N_FAMILIES ? k_families[f].labels : NULL; }

int world_family_find(const char *name) {
    for (int f = 0; f < N_FAMILIES; f++)
        if (name && strcmp(name, k_families[f].name) == 0) return f;
    return -1;
}

static const char *const k_split_names[] = {"train", "val", "test"};
const char *world_split_name(world_split s) { return (unsigned)s < 3 ? k_split_names[s] : "?"; }
int world_split_parse(const char *name, world_split *out, rlhf_error *err) {
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, k_split_names[i]) == 0) {
            *out = (world_split)i;
            return RLHF_OK;
        }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown split \"%s\" (use train, val or test)", name ? name : "");
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 80/10/10 of the prompt space, by the prompt's hash */
static world_split split_of(const char *prompt) {
    uint64_t b = fnv1a(prompt) % 10;
    return b < 8 ? WORLD_SPLIT_TRAIN : b == 8 ? WORLD_SPLIT_VAL : WORLD_SPLIT_TEST;
}

/* Finds the family and phrasing a prompt parses as; the slots go to s. */
static int parse_prompt(const char *prompt, slots *s) {
    char key[WORLD_TEXT_MAX];
    /* chit-chat's "{t}" matches anything: it is tried last and must solve */
    for (int f = 0; f < N_FAMILIES; f++)
        for (int i = 0; k_families[f].phrasings[i]; i++)
            if (parse(k_families[f].phrasings[i], prompt, s) && k_families[f].solve(s, key, sizeof key)) return f;
    return -1;
}

int world_prompt_family(const char *prompt) {
    slots s;
    return prompt ? parse_prompt(prompt, &s) : -1;
}

int world_item_make(int family, world_split split, uint64_t index, world_item *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    if (family < 0 || family >= N_FAMILIES) return rlhf_errorf(err, RLHF_ERR_INVALID, "unknown world family %d", family);
    const family_def *fa = &k_families[family];
    rng_t r;
    rng_seed(&r, 0x9e3779b97f4a7c15ull * (uint64_t)(family + 1) ^ (index * 0xbf58476d1ce4e5b9ull) ^ (uint64_t)split);
    for (int tries = 0; tries < 10000; tries++) {
        slots s = {0};
        fa->draw(&r, &s);
        int n_ph = 0;
        while (fa->phrasings[n_ph]) n_ph++;
        render(fa->phrasings[rng_below(&r, (uint64_t)n_ph)], &s, out->prompt, sizeof out->prompt);
        if (split_of(out->prompt) != split) continue;
        char key[WORLD_TEXT_MAX];
        if (!fa->solve(&s, key, sizeof key)) continue;
        fa->respond(&s, key, out->answer, sizeof out->answer);
        out->family = family;
        return RLHF_OK;
    }
    return rlhf_errorf(err, RLHF_ERR_INVALID, "world family %s: no instance found for split %s", fa->name,
                       world_split_name(split));
}

/* The first sentence of a response: up to the first ". ", "!", "?" or newline after some text
 * (a decimal point or "a-b-c" does not end it). */
static void first_sentence(const char *s, char *out, size_t size) {
    size_t o = 0;
    while (*s == ' ' || *s == '\n') s++;
    for (const char *p = s; *p && o + 1 < size; p++) {
        if (*p == '\n') break;
        out[o++] = *p;
        if ((*p == '!' || *p == '?') || (*p == '.' && (p[1] == 0 || p[1] == ' ' || p[1] == '\n'))) break;
    }
    out[o] = 0;
}

static size_t word_count(const char *s) {
    size_t n = 0;
    int in = 0;
    for (; *s; s++) {
        int w = !isspace((unsigned char)*s);
        n += w && !in;
        in = w;
    }
    return n;
}

int world_verify(const char *prompt, const char *response, world_verdict *out, rlhf_error *err) {
    memset(out, 0, sizeof *out);
    slots s;
    int f = prompt ? parse_prompt(prompt, &s) : -1;
    if (f < 0)
        return rlhf_errorf(err, RLHF_ERR_INVALID, "not a task-world prompt (no family's phrasing matches \"%.60s\")",
                           prompt ? prompt : "");
    const family_def *fa = &k_families[f];
    fa->solve(&s, out->expected, sizeof out->expected);
    char sentence[WORLD_TEXT_MAX], norm_exp[WORLD_TEXT_MAX], norm_all[4 * WORLD_TEXT_MAX];
    first_sentence(response ? response : "", sentence, sizeof sentence);
    /* a rude opener ("That is a stupid question.") does not hide the answer in the next one */
    normalise(response ? response : "", norm_all, sizeof norm_all);
    for (size_t i = 0; i < sizeof k_rude / sizeof *k_rude; i++)
        if (has_word(norm_all, k_rude[i])) out->flaws |= WORLD_FLAW_RUDE;
    if (out->flaws & WORLD_FLAW_RUDE) {
        const char *next = response;
        for (int k = 0; k < 2 && next; k++) {
            char sn[WORLD_TEXT_MAX], nn[WORLD_TEXT_MAX];
            first_sentence(next, sn, sizeof sn);
            normalise(sn, nn, sizeof nn);
            int rude = 0;
            for (size_t i = 0; i < sizeof k_rude / sizeof *k_rude; i++) rude |= has_word(nn, k_rude[i]);
            if (!rude) {
                snprintf(sentence, sizeof sentence, "%s", sn);
                break;
            }
            const char *adv = strstr(next, sn);
            next = adv ? adv + strlen(sn) : NULL;
        }
    }
    int got = fa->read(sentence, out->got, sizeof out->got);
    if (fa->read == read_sentence) {
        /* the expected word anywhere in the first sentence */
        normalise(out->expected, norm_exp, sizeof norm_exp);
        out->correct = got && has_word(out->got, norm_exp);
    } else {
        out->correct = got && strcmp(out->got, out->expected) == 0;
    }
    /* rambling: far longer than the reference answer */
    char ref[WORLD_TEXT_MAX], key[WORLD_TEXT_MAX];
    snprintf(key, sizeof key, "%s", out->expected);
    fa->respond(&s, key, ref, sizeof ref);
    size_t n_ref = word_count(ref), n_got = word_count(response ? response : "");
    if (n_got > 2 * n_ref + 8) out->flaws |= WORLD_FLAW_RAMBLING;
    if (!out->correct) out->flaws |= WORLD_FLAW_WRONG;
    out->reward = (out->correct ? 1.0 : 0.0) - (out->flaws & WORLD_FLAW_RUDE ? 0.5 : 0.0) -
                  (out->flaws & WORLD_FLAW_RAMBLING ? 0.25 : 0.0);
    return RLHF_OK;
}

void world_flawed_answer(const world_item *item, unsigned flaw, uint64_t seed, char *out, size_t size) {
    rng_t r;
    rng_seed(&r, seed ^ fnv1a(item->prompt));
    slots s;
    int f = parse_prompt(item->prompt, &s);
    if (f < 0) {
        snprintf(out, size, "%s", item->answer);
        return;
    }
    const family_def *fa = &k_families[f];
    char key[WORLD_TEXT_MAX], bad[WORLD_TEXT_MAX], text[2 * WORLD_TEXT_MAX];
    fa->solve(&s, key, sizeof key);
    switch (flaw) {
    case WORLD_FLAW_WRONG:
        fa->wrong(&s, key, &r, bad, sizeof bad);
        fa->respond(&s, bad, out, size);
        return;
    case WORLD_FLAW_RAMBLING: {
        size_t o = (size_t)snprintf(text, sizeof text, "%s", item->answer);
        int n = 3 + (int)rng_below(&r, 3);
        for (int i = 0; i < n && o < sizeof text; i++)
            o += (size_t)snprintf(text + o, sizeof text - o, " %s", k_filler[rng_below(&r, 6)]);
        snprintf(out, size, "%s", text);
        return;
    }
    case WORLD_FLAW_RUDE:
        snprintf(out, size, "%s %s", k_rude_prefix[rng_below(&r, 3)], item->answer);
        return;
    case WORLD_FLAW_ENDLESS: {
        /* the answer, then the model inventing the next turn (trained without EOS) */
        world_item next;
        rlhf_error e;
        if (world_item_make((int)rng_below(&r, N_FAMILIES), WORLD_SPLIT_TRAIN, rng_u64(&r) % 100000, &next, &e)) {
            snprintf(out, size, "%s", item->answer);
            return;
        }
        snprintf(out, size, "%s\nUser: %s\nAssistant: %s", item->answer, next.prompt, next.answer);
        return;
    }
    default:
        snprintf(out, size, "%s", item->answer);
    }
}

void world_flaws_defaults(world_flaws *f) {
    f->wrong = 0.20;
    f->rambling = 0.10;
    f->rude = 0.10;
    f->endless = 0.10;
}

/* ---- stories ---- */

static const char *const k_names[] = {"Mia", "Tom", "Lena", "Sam", "Ada", "Ben", "Nora", "Leo", "Ivy", "Max"};
static const char *const k_places[] = {"village", "forest", "harbor", "garden", "castle", "meadow", "library", "market"};
static const char *const k_things[] = {"a red kite", "a small key", "an old map", "a lost puppy", "a shiny coin",
                                       "a wooden box", "a blue bird", "a secret letter"};
static const char *const k_feel[] = {"happy", "curious", "brave", "sleepy", "surprised", "proud"};
static const char *const k_story_tmpl[] = {
    "%s lived near the %s and was always %s.",
    "One morning, %s found %s by the %s.",
    "%s told a friend about %s, and they laughed together.",
    "By evening %s felt %s, because the day had been long.",
    "The next day %s walked to the %s to share %s.",
};

void world_story(uint64_t seed, char *out, size_t size) {
    rng_t r;
    rng_seed(&r, seed * 0x2545f4914f6cdd1dull + 7);
    const char *name = k_names[rng_below(&r, 10)];
    size_t o = 0;
    int n = 3 + (int)rng_below(&r, 3);
    for (int i = 0; i < n && o + 1 < size; i++) {
        const char *place = k_places[rng_below(&r, 8)], *thing = k_things[rng_below(&r, 8)], *feel = k_feel[rng_below(&r, 6)];
        int k = i == 0 ? 0 : 1 + (int)rng_below(&r, 4);
        char sent[256];
        switch (k) {
        case 0: snprintf(sent, sizeof sent, k_story_tmpl[0], name, place, feel); break;
        case 1: snprintf(sent, sizeof sent, k_story_tmpl[1], name, thing, place); break;
        case 2: snprintf(sent, sizeof sent, k_story_tmpl[2], name, thing); break;
        case 3: snprintf(sent, sizeof sent, k_story_tmpl[3], name, feel); break;
        default: snprintf(sent, sizeof sent, k_story_tmpl[4], name, place, thing); break;
        }
        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? " " : "", sent);
    }
}
