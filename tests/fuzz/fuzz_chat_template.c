/* libFuzzer target: chat template detection and rendering.
 *
 * Input: byte 0's low bit is add_generation_prompt and its next bits pick
 * how the family is chosen (detected from the template text, or each
 * family in turn); then the template text up to a NUL byte; then messages
 * as role 0x01 content 0x01 role 0x01 content ... (a missing last content
 * is empty). Checks: a detected family always renders; ChatML's length is
 * the sum of its parts; an unknown template gets an error message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

#define MAX_MSGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int add_gen = data[0] & 1, mode = (data[0] >> 1) & 3;
    /* one NUL-terminated copy; the separators become terminators */
    char *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    const char *tmpl = buf;
    size_t tl = strlen(tmpl);
    chat_message msgs[MAX_MSGS];
    size_t n = 0;
    if (tl + 1 < size - 1) {
        char *p = buf + tl + 1, *end = buf + size - 1;
        while (p < end && n < MAX_MSGS) {
            char *sep = memchr(p, 1, (size_t)(end - p));
            char *role = p;
            if (sep) *sep = '\0';
            p = sep ? sep + 1 : end;
            char *content = p;
            sep = p < end ? memchr(p, 1, (size_t)(end - p)) : NULL;
            if (sep) *sep = '\0';
            p = sep ? sep + 1 : end;
            msgs[n].role = role;
            msgs[n].content = content < end ? content : "";
            n++;
        }
    }
    doze_error e;
    char *out = NULL;
    size_t len = 0;
    if (mode == 0) {
        const char *what = NULL;
        chat_family f = chat_template_detect(tmpl, &what);
        doze_status st = chat_template_apply(tmpl, msgs, n, add_gen, &out, &len, &e);
        if (f == CHAT_UNKNOWN) {
            if (st == DOZE_OK || out || !e.message[0]) abort();
        } else if (st != DOZE_OK && st != DOZE_ERR_OUT_OF_MEMORY) {
            abort();
        }
        if (f == CHAT_CHATML && st == DOZE_OK) {
            size_t want = add_gen ? strlen("<|im_start|>assistant\n") : 0;
            for (size_t i = 0; i < n; i++)
                want += strlen("<|im_start|>\n<|im_end|>\n") + strlen(msgs[i].role) + strlen(msgs[i].content);
            if (len != want || strlen(out) > len) abort();
        }
        free(out);
    } else {
        for (int f = CHAT_CHATML; f < CHAT_FAMILY_COUNT_; f++) {
            size_t *lit = NULL, n_lit = 0;
            doze_status st = chat_template_render_literal((chat_family)f, msgs, n, add_gen, &out, &len, &lit, &n_lit,
                                                          &e);
            if (st != DOZE_OK && st != DOZE_ERR_OUT_OF_MEMORY) abort();
            if (st == DOZE_OK && (!out || out[len] != '\0')) abort();
            /* the contents' ranges: in order, inside the text, at most one per message */
            if (st == DOZE_OK && n_lit > n) abort();
            for (size_t i = 0; st == DOZE_OK && i < n_lit; i++)
                if (lit[2 * i] >= lit[2 * i + 1] || lit[2 * i + 1] > len || (i && lit[2 * i] < lit[2 * i - 1]))
                    abort();
            free(lit);
            free(out);
            out = NULL;
        }
    }
    free(buf);
    return 0;
}
