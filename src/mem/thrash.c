/*
 * thrash — noticing that paging, not compute, sets the pace of generation.
 *
 * A model that does not stay resident re-reads weights from disk for every token; the user sees
 * a crawl and no reason. Per generated token the engine reports what the fault and I/O counters
 * moved; when, over a window of tokens, a sizeable share of the weights comes from storage each
 * token and the speed is far below what the model reaches resident, this says so once, with
 * the numbers and what to do. A resident model reads nothing from storage, so it never fires.
 */
#include <stdio.h>
#include <string.h>

#include "mem/mem.h"

#define WINDOW 8

void llm_thrash_init(llm_thrash *t, uint64_t bytes_per_token, double resident_tok_s)
{
    memset(t, 0, sizeof *t);
    t->bytes_per_token = bytes_per_token;
    t->resident_tok_s = resident_tok_s;
}

bool llm_thrash_observe(llm_thrash *t, uint64_t major_faults, uint64_t read_bytes, double seconds)
{
    t->faults += major_faults;
    t->read += read_bytes;
    t->seconds += seconds;
    if (++t->tokens < WINDOW || t->warned)
        return false;
    double per_tok_read = (double)t->read / t->tokens;
    double per_tok_faults = (double)t->faults / t->tokens;
    /* without I/O accounting (macOS), count a major fault as at least one 16 KiB page */
    double from_disk = per_tok_read > per_tok_faults * 16384 ? per_tok_read : per_tok_faults * 16384;
    double tok_s = t->seconds > 0 ? t->tokens / t->seconds : 0;
    bool heavy = t->bytes_per_token && from_disk >= 0.2 * (double)t->bytes_per_token;
    bool slow = t->resident_tok_s <= 0 || tok_s < 0.5 * t->resident_tok_s;
    if (heavy && slow) {
        t->warned = true;
        char resident[64] = "";
        if (t->resident_tok_s > 0)
            snprintf(resident, sizeof resident, " where resident it would reach ~%.1f tokens/s", t->resident_tok_s);
        snprintf(t->message, sizeof t->message,
                 "warning: paging is slowing generation: %.0f MB read from disk per token (%.0f%% of the weights), "
                 "%.0f major faults per token, %.2f tokens/s%s. The model does not stay in memory: use a "
                 "smaller quantization (e.g. q4_k_m), a shorter context (--ctx), close memory-hungry programs, "
                 "or let llmap stream the weights (--stream).",
                 from_disk / 1e6, 100.0 * from_disk / (double)t->bytes_per_token, per_tok_faults, tok_s, resident);
        return true;
    }
    /* slide: keep half the window so a change of regime shows within a few tokens */
    t->faults /= 2;
    t->read /= 2;
    t->seconds /= 2;
    t->tokens /= 2;
    return false;
}
