/* `doze ppl`: perplexity over a text of stories.
 * Protocol (as ../shared/text/README): split at lines `<|endoftext|>`,
 * strip each story of the line breaks around it, skip empty ones, encode with
 * BOS and the dummy leading space, truncate to the context length, and
 * average the negative log-likelihood of every token after the first. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_util.h"
#include "commands.h"
#include "gates.h"

static const char separator[] = "<|endoftext|>";

/* The reference protocol strips the line breaks around each story (a story
 * that starts with a space keeps it): 48,657 tokens on tinystories-dev. */
static int is_space(char c) { return c == '\n' || c == '\r'; }

typedef struct {
    double nll;
    double compute; /* sum of the steps' compute ratios (a mixture: of the file's top-k) */
    double experts; /* a mixture: experts run, summed over tokens and layers */
    long long ffns; /* a mixture: (token, layer) pairs whose FFN ran */
    doze_cost_model used, file; /* a mixture: the dense costs at the k run and at the file's k */
    long long tokens;
    long long bytes; /* text bytes of the predicted tokens: nats per byte compare vocabularies */
    int stories;
} ppl_total;

static doze_status score_story(doze_model *m, doze_session *s, const char *text, size_t len,
                               int32_t **ids, int *cap, ppl_total *t, doze_error *e) {
    int n = 0;
    doze_status st = doze_tokenize(m, text, len, DOZE_TOKENIZE_ADD_SPECIAL, *ids, *cap, &n, e);
    if (st != DOZE_OK) return st;
    if (n > *cap) {
        int32_t *nb = realloc(*ids, (size_t)n * sizeof *nb);
        if (!nb) {
            e->code = DOZE_ERR_OUT_OF_MEMORY;
            strcpy(e->message, "out of memory");
            return DOZE_ERR_OUT_OF_MEMORY;
        }
        *ids = nb;
        *cap = n;
        st = doze_tokenize(m, text, len, DOZE_TOKENIZE_ADD_SPECIAL, *ids, *cap, &n, e);
        if (st != DOZE_OK) return st;
    }
    const doze_model_info *info = doze_model_get_info(m);
    if (n > info->context_length) n = info->context_length;
    doze_session_reset(s);
    if (n < 2) {
        t->stories++;
        return DOZE_OK;
    }
    const uint8_t *moe = doze_session_expert_mask(s);
    double *nll = malloc((size_t)(n - 1) * (sizeof(double) + sizeof(float)));
    if (!nll) {
        e->code = DOZE_ERR_OUT_OF_MEMORY;
        strcpy(e->message, "out of memory");
        return DOZE_ERR_OUT_OF_MEMORY;
    }
    float *comp = (float *)(nll + (n - 1));
    /* a mixture's expert counts are read after every step, so it scores a token at a time */
    if (!moe) st = doze_session_score(s, *ids, *ids + 1, n - 1, nll, comp, e);
    for (int i = 0; st == DOZE_OK && i + 1 < n; i++) {
        if (moe) st = doze_session_score(s, *ids + i, *ids + i + 1, 1, nll + i, comp + i, e);
        if (st != DOZE_OK) break;
        t->nll += nll[i];
        char piece[DOZE_MAX_PIECE];
        size_t plen = 0;
        if (doze_token_to_piece(m, (*ids)[i], (*ids)[i + 1], piece, sizeof piece, &plen, e) == DOZE_OK)
            t->bytes += (long long)plen;
        double c = comp[i];
        if (moe) {
            const uint8_t *on = doze_session_expert_mask(s);
            /* compute in units of the file's own top-k, also when another k runs */
            c *= cost_dense(&t->used, i + 1) / cost_dense(&t->file, i + 1);
            for (int l = 0; l < info->n_layers; l++) {
                int ran = 0;
                for (int e2 = 0; e2 < info->n_experts; e2++) ran += on[(size_t)l * info->n_experts + e2];
                t->experts += ran;
                t->ffns += ran > 0;
            }
        }
        t->compute += c;
        t->tokens++;
    }
    free(nll);
    if (st != DOZE_OK) return st;
    t->stories++;
    return DOZE_OK;
}

static const char *const ppl_forms[] = {"MODEL TEXTFILE", NULL};
static const cli_option ppl_options[] = {
    {"--ctx", CLI_INT, "N", "context length; longer stories are cut to it (default: the model's)", NULL, 0},
    CLI_BUDGET_OPTION,
    CLI_GATE_OPTIONS,
    CLI_THREADS_OPTION,
    CLI_EXPERTS_USED_OPTION,
    CLI_FFN_BLOCK_OPTION,
    CLI_OPTIONS_END,
};
const cli_command cmd_ppl_spec = {
    "ppl", ppl_forms, 2, 2, "perplexity over the stories of a text",
    "Perplexity over the stories of TEXTFILE (split at <|endoftext|> lines, each encoded\n"
    "with BOS and cut to the context), with nats per byte to compare vocabularies; with\n"
    "--budget below 1 (or --gates) under the gates, with the compute spent.",
    ppl_options,
};

int cmd_ppl(int argc, char **argv) {
    cli_args a;
    int prc = cli_parse(&cmd_ppl_spec, argc, argv, &a);
    if (prc >= 0) return prc;
    if (cli_gate_options_check(&a)) return 2;
    const char *path = cli_pos(&a, 0);
    const char *text_path = cli_pos(&a, 1);
    long long ctx = cli_get_int(&a, "--ctx", 0);
    double budget = cli_get_float(&a, "--budget", 1.0);
    if (ctx < 0 || ctx > (1 << 30)) return cli_usage_error(&a, "--ctx must be in 0..%d (0: the model's)", 1 << 30);
    if (!(budget > 0.0 && budget <= 1.0)) return cli_usage_error(&a, "--budget must be in (0, 1]");
    doze_model_params mp = doze_model_default_params();
    if (cli_threads_option(&a, &mp) || cli_experts_used_option(&a, &mp) || cli_ffn_block_option(&a, &mp)) return 2;
    mp.context_length = (int)ctx;
    doze_model *m = cli_load_model(path, &mp);
    if (!m) return 1;
    size_t n = 0;
    char *text = (char *)cli_read_file(text_path, &n);
    if (!text) {
        doze_model_free(m);
        return 1;
    }
    doze_error e;
    doze_session *s = doze_session_new(m, &e);
    doze_gates *gates = NULL;
    int rc = 0;
    if (!s) {
        rc = cli_print_error("ppl", &e);
        goto done;
    }
    if (budget < 1.0 || cli_has(&a, "--gates")) {
        gates = cli_gates(&a, m, 1, 0);
        if (!gates || doze_session_set_gates(s, gates, &e) != DOZE_OK ||
            doze_session_set_budget(s, (float)budget, &e) != DOZE_OK) {
            rc = gates ? cli_print_error("gates", &e) : 1;
            goto done;
        }
    }
    ppl_total total;
    memset(&total, 0, sizeof total);
    const doze_model_info *info = doze_model_get_info(m);
    if (info->n_experts) {
        doze_model_info file = *info;
        file.n_experts_used = info->n_experts_used_file;
        cost_model_init(info, &total.used);
        cost_model_init(&file, &total.file);
    }
    int32_t *ids = NULL;
    int cap = 0;
    const size_t sep_len = sizeof separator - 1;
    size_t story = 0; /* start of the current story */
    for (size_t line = 0; line <= n && rc == 0;) {
        size_t eol = line;
        while (eol < n && text[eol] != '\n') eol++;
        size_t l = eol - line;
        if (l && text[line + l - 1] == '\r') l--;
        int is_sep = l == sep_len && memcmp(text + line, separator, sep_len) == 0;
        if (is_sep || eol >= n) {
            size_t a = story, b = is_sep ? line : n;
            while (a < b && is_space(text[a])) a++;
            while (b > a && is_space(text[b - 1])) b--;
            if (b > a && score_story(m, s, text + a, b - a, &ids, &cap, &total, &e) != DOZE_OK)
                rc = cli_print_error("ppl", &e);
            story = eol + 1;
        }
        if (eol >= n) break;
        line = eol + 1;
    }
    free(ids);
    if (rc == 0) {
        if (total.tokens == 0) {
            err_printf("doze: no tokens to score in %s\n", text_path);
            rc = 1;
        } else {
            double mean = total.nll / (double)total.tokens;
            double per_byte = total.bytes > 0 ? total.nll / (double)total.bytes : 0.0;
            char moe[160] = "";
            if (info->n_experts)
                snprintf(moe, sizeof moe, " experts/layer %.3f experts/ffn %.3f (top-%d of %d, file top-%d)",
                         total.experts / ((double)total.tokens * info->n_layers),
                         total.ffns ? total.experts / (double)total.ffns : 0.0, info->n_experts_used,
                         info->n_experts, info->n_experts_used_file);
            if (gates || info->n_experts)
                out_printf("ppl %.4f tokens %lld stories %d nll %.5f compute %.4f budget %.2f "
                           "bytes %lld nats/byte %.4f%s\n",
                           exp(mean), total.tokens, total.stories, mean,
                           total.compute / (double)total.tokens, budget, total.bytes, per_byte, moe);
            else
                out_printf("ppl %.4f tokens %lld stories %d nll %.5f bytes %lld nats/byte %.4f\n",
                           exp(mean), total.tokens, total.stories, mean, total.bytes, per_byte);
        }
    }
done:
    doze_gates_free(gates);
    doze_session_free(s);
    free(text);
    doze_model_free(m);
    return rc;
}
