/* test_health.c — the health-warning rules (src/train/health.h) on constructed metric
 * sequences: each DPO warning fires on the pattern it names (at the step it should), a healthy
 * run fires none, a pattern outside its window (accuracies reaching 1.0 late) does not fire,
 * every rule fires once; the PPO/GRPO rules on their patterns and not on healthy values. */
#include <string.h>

#include "src/train/health.h"
#include "tests/test_util.h"

typedef struct {
    int n;
    health_warning w[16];
} fired;

/* Feeds step s (1-based) of a DPO run with these metrics; collects warnings. */
static void dpo_step(health *h, long s, double chosen, double rejected, double acc, fired *f) {
    train_head_out m = {0};
    train_head_out_set(&m, "rewards/accuracies", acc);
    train_head_out_set(&m, "logps/chosen", chosen);
    train_head_out_set(&m, "logps/rejected", rejected);
    train_head_out_set(&m, "rewards/margins", 0.1);
    f->n += health_observe(h, s, &m, f->w + f->n, 16 - f->n);
}

static const health_warning *find(const fired *f, const char *code) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->w[i].code, code) == 0) return &f->w[i];
    return NULL;
}

/* A healthy accuracy curve: 0 at step 1 (policy = reference), then rising from 0.5 to ~0.85,
 * with a dip every third step so it is never pinned at 1. */
static double healthy_acc(long s) {
    if (s == 1) return 0.0;
    double a = 0.5 + 0.35 * (double)(s < 40 ? s : 40) / 40.0;
    return s % 3 == 0 ? a - 0.125 : a;
}

static void check_text(const health_warning *w) {
    CHECK(w && strlen(w->text) > 80 && (strstr(w->text, "Try") || strstr(w->text, "try")),
          "%s says what it means and what to try", w ? w->code : "?");
}

int main(void) {
    health h;
    /* healthy: chosen rises a little, rejected falls a little, accuracy climbs */
    fired f = {0};
    health_init(&h, HEALTH_DPO | HEALTH_PPO | HEALTH_ROLLOUT | HEALTH_REWARD_MODEL | HEALTH_GRPO, NULL);
    for (long s = 1; s <= 80; s++) dpo_step(&h, s, -20.0 + 0.02 * s, -20.0 - 0.05 * s, healthy_acc(s), &f);
    CHECK(f.n == 0, "a healthy DPO run raises no warning (got %d: %s)", f.n, f.n ? f.w[0].code : "");
    health_free(&h);

    /* chosen falling fast with rejected: chosen -20 -> -32, rejected -20 -> -44 over 40 steps */
    memset(&f, 0, sizeof f);
    health_init(&h, HEALTH_DPO, NULL);
    for (long s = 1; s <= 40; s++) dpo_step(&h, s, -20.0 - 0.3 * s, -20.0 - 0.6 * s, healthy_acc(s), &f);
    const health_warning *w = find(&f, "dpo/chosen_logps_falling");
    CHECK(w != NULL && f.n == 1, "falling chosen and rejected log-probs raise exactly that warning (%d)", f.n);
    /* first/last 5-step means: the drop passes 0.3 * 20.6 = 6.2 nats once the means are > 6.2 apart */
    CHECK(w && w->step >= 20 && w->step <= 30, "it fires as the drop passes the threshold (step %ld)", w ? w->step : -1);
    check_text(w);
    health_free(&h);

    /* chosen falling alone while rejected rises is not that pattern; nor is rejected falling alone */
    memset(&f, 0, sizeof f);
    health_init(&h, HEALTH_DPO, NULL);
    for (long s = 1; s <= 40; s++) dpo_step(&h, s, -20.0 + 0.01 * s, -20.0 - 1.0 * s, healthy_acc(s), &f);
    CHECK(f.n == 0, "only the rejected replies falling is healthy (%d)", f.n);
    health_free(&h);

    /* accuracies pinned at 1.0 from step 2 */
    memset(&f, 0, sizeof f);
    health_init(&h, HEALTH_DPO, NULL);
    for (long s = 1; s <= 40; s++) dpo_step(&h, s, -20.0, -20.0 - s, s == 1 ? 0.0 : 1.0, &f);
    w = find(&f, "dpo/accuracies_pinned");
    CHECK(w && w->step == 6, "accuracies 1.0 on steps 2..6 warn at step 6 (step %ld)", w ? w->step : -1);
    CHECK(f.n == 1, "and only once (%d warnings)", f.n);
    check_text(w);
    health_free(&h);

    /* reaching 1.0 later (step 20 on) is learning, not a shortcut */
    memset(&f, 0, sizeof f);
    health_init(&h, HEALTH_DPO, NULL);
    for (long s = 1; s <= 60; s++) dpo_step(&h, s, -20.0, -20.0 - 0.1 * s, s < 20 ? healthy_acc(s) : 1.0, &f);
    CHECK(!find(&f, "dpo/accuracies_pinned") && f.n == 0, "accuracy 1.0 reached at step 20 raises nothing (%d)", f.n);
    health_free(&h);

    /* stuck at chance: 0.375 / 0.625 alternating */
    memset(&f, 0, sizeof f);
    health_init(&h, HEALTH_DPO, NULL);
    for (long s = 1; s <= 60; s++) dpo_step(&h, s, -20.0, -20.0, s % 2 ? 0.375 : 0.625, &f);
    w = find(&f, "dpo/accuracies_at_chance");
    CHECK(w && w->step == 30, "accuracy at chance warns once 30 steps are done (step %ld)", w ? w->step : -1);
    CHECK(f.n == 1, "and only once (%d)", f.n);
    check_text(w);
    health_free(&h);

    /* a rule of a family the trainer did not enable never fires */
    memset(&f, 0, sizeof f);
    health_init(&h, HEALTH_PPO, NULL);
    for (long s = 1; s <= 60; s++) dpo_step(&h, s, -20.0 - s, -20.0 - 2 * s, 1.0, &f);
    CHECK(f.n == 0, "DPO patterns in a PPO run's health raise nothing (%d)", f.n);
    health_free(&h);

    /* PPO / rollouts / reward model / GRPO, by their metric names */
    struct {
        const char *metric, *code;
        unsigned kind;
        double bad, good;
        long fires_at;
    } online[] = {
        {"val/ratio", "ppo/ratio_far", HEALTH_PPO, 1.5, 1.05, 3},
        {"objective/kl", "ppo/negative_kl", HEALTH_PPO, -0.02, 0.01, 10},
        {"val/num_eos_tokens", "rollout/no_eos", HEALTH_ROLLOUT, 0, 3, 5},
        {"completions/clipped_ratio", "rollout/no_eos", HEALTH_ROLLOUT, 1.0, 0.4, 5},
        {"objective/scores_std", "reward/constant", HEALTH_REWARD_MODEL, 1e-5, 0.3, 5},
        {"frac_reward_zero_std", "grpo/zero_spread", HEALTH_GRPO, 1.0, 0.25, 3},
    };
    for (size_t i = 0; i < sizeof online / sizeof *online; i++) {
        health_warning out[4];
        int got_at = -1, n = 0;
        health_init(&h, online[i].kind, NULL);
        for (long s = 1; s <= 20; s++) {
            health_observe_value(&h, s, online[i].metric, online[i].good);
            n += health_check(&h, s, out, 4);
        }
        CHECK(n == 0, "%s: healthy values (%g) raise nothing", online[i].metric, online[i].good);
        health_free(&h);
        health_init(&h, online[i].kind, NULL);
        n = 0;
        for (long s = 1; s <= 20; s++) {
            health_observe_value(&h, s, online[i].metric, online[i].bad);
            int k = health_check(&h, s, out, 4);
            if (k && got_at < 0) {
                got_at = (int)s;
                CHECK(strcmp(out[0].code, online[i].code) == 0, "%s raises %s (got %s)", online[i].metric,
                      online[i].code, out[0].code);
                check_text(&out[0]);
            }
            n += k;
        }
        CHECK(got_at == online[i].fires_at && n == 1, "%s = %g warns once at step %ld (step %d, %d warnings)",
              online[i].metric, online[i].bad, online[i].fires_at, got_at, n);
        health_free(&h);
    }
    return test_finish("health");
}
