/*
 * bench/bench_answer.c — answer extraction + normalization + comparison, CPU.
 *
 * Configurations (ref and fast, one thread each):
 *   short     "... **Final Answer**\n\boxed{72}" against gold "72" and a
 *             fraction answer "\boxed{\dfrac{3}{8}}" against "0.375":
 *             answers/s (items_per_second).
 *   long      realistic R1 outputs of 2 KB and 20 KB: a <think> block of
 *             reasoning (English, LaTeX, Chinese, decoy boxes), "</think>",
 *             and a boxed answer. bytes/s counts the whole output
 *             (bytes = output length per item; the scan reads from the end
 *             and stops at the last "</think>", so most bytes are skipped,
 *             which is the point of the design).
 *   no_think  a 20 KB output without think tags and without a box: the
 *             fallback chain reads the whole text (the worst case).
 * Each configuration is checked (the verdict must be "equal") before timing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "r1lab/answer.h"

typedef struct answer_case {
    r1_backend backend;
    const char *text;
    size_t length;
    const char *gold;
} answer_case;

static const char *const paragraphs[] = {
    /* one paragraph, one literal (clang -Wstring-concatenation) */
    "Okay, let's see. Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. So in May she sold \\frac{48}{2} = 24 clips, and \\boxed{24} is only May's count.\n\n",
    "嗯，我再检查一下。四月卖了48个，五月卖了一半，也就是24个，所以总共是48+24=72个。\n\n",
    "Let me verify with another approach: 48 \\times 1.5 = 72. Wait, is that right? $48 + 24 = 72$. Yes.\n\n",
};

/* think = 0: no think tags and only the box-free paragraphs (1, 2). */
static char *make_output(size_t bytes, int think, const char *answer_region) {
    char *text = malloc(bytes + 512);
    size_t n = 0;
    if (think) n += (size_t)sprintf(text, "<think>\n");
    for (int k = 0; n < bytes; ++k) {
        const char *p = think ? paragraphs[k % 3] : paragraphs[1 + k % 2];
        size_t m = strlen(p);
        memcpy(text + n, p, m);
        n += m;
    }
    n += (size_t)sprintf(text + n, "%s%s", think ? "</think>\n\n" : "", answer_region);
    return text;
}

static void bench_answer(r1b_state *state, const void *user) {
    const answer_case *c = user;
    char answer[1024];
    r1_answer_extraction e;
    r1_answer_verdict v;
    if (r1_answer_extract(c->backend, c->text, c->length, NULL, answer, sizeof answer, &e) != R1_OK ||
        r1_answer_equal(c->backend, c->gold, strlen(c->gold), answer, e.length, NULL, &v) != R1_OK || !v.equal) {
        r1b_skip_with_error(state, "check failed: the answer is not equal to the gold");
        return;
    }
    for (; r1b_keep_running(state);) {
        r1_answer_extract(c->backend, c->text, c->length, NULL, answer, sizeof answer, &e);
        r1_answer_equal(c->backend, c->gold, strlen(c->gold), answer, e.length, NULL, &v);
        r1b_do_not_optimize(&v);
    }
    /* bytes = the whole output, once per item */
    r1b_set_bytes_processed(state, r1b_iterations(state) * (int64_t)c->length);
    r1b_set_items_processed(state, r1b_iterations(state));
}

static void add(const char *what, r1_backend backend, const char *text, const char *gold) {
    answer_case *c = malloc(sizeof *c);
    c->backend = backend, c->text = text, c->length = strlen(text), c->gold = gold;
    char name[160];
    snprintf(name, sizeof name, "answer(%s,bytes=%zu,backend=%s)", what, c->length, r1_backend_name(backend));
    r1b_register(name, bench_answer, c);
}

void r1b_register_answer(void) {
    static const char short_integer[] = "So she sold 48 + 24 = 72 clips.\n\n**Final Answer**\n\\boxed{72}";
    static const char short_fraction[] = "Therefore the probability is $\\boxed{\\dfrac{3}{8}}$.";
    const char *long2k = make_output(2048, 1, "**Final Answer**\n\\[\n\\boxed{72}\n\\]");
    const char *long20k = make_output(20480, 1, "So the total is \\(\\boxed{72}\\) clips.");
    const char *plain20k = make_output(20480, 0, "So the answer is 72.");
    for (int b = 0; b < 2; ++b) {
        r1_backend backend = b ? R1_FAST : R1_REF;
        add("short_integer", backend, short_integer, "72");
        add("short_fraction", backend, short_fraction, "0.375");
        add("long_r1", backend, long2k, "72");
        add("long_r1", backend, long20k, "72");
        add("no_think_no_box", backend, plain20k, "72");
    }
}
