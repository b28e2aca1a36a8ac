/* The built `doze` CLI as a user meets it: usage errors (unknown options,
 * missing values, malformed numbers, extra or missing arguments: exit 2,
 * the option named, then the command's usage), --help per command (exit
 * 0, every option the parser accepts is listed and every listed option is
 * accepted), --version (the same string as js/package.json), prompts longer
 * than the context (an error naming both numbers; --keep-last keeps the
 * last N tokens), file errors with their reason, sampler errors naming the
 * one broken rule, and the sampling options at work. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "doze.h"
#include "test_util.h"

static char dir[256];

typedef struct {
    int status;  /* exit code, or -1 when it did not exit normally */
    char *out;   /* stdout, NUL-terminated */
    char *err;   /* stderr */
    size_t n_out;
} result;

static char *slurp(const char *path, size_t *n) {
    size_t len = 0;
    unsigned char *b = test_read_file(path, &len);
    char *s = malloc(len + 1);
    if (b) memcpy(s, b, len);
    s[len] = '\0';
    free(b);
    if (n) *n = len;
    return s;
}

/* runs `doze ARGS` (ARGS as shell words) */
static result run(const char *args) {
    char cmd[8192], o[320], e[320];
    snprintf(o, sizeof o, "%s/out.txt", dir);
    snprintf(e, sizeof e, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "%s %s > %s 2> %s", DOZE_CLI, args, o, e);
    int rc = system(cmd);
    result r;
    r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    r.out = slurp(o, &r.n_out);
    r.err = slurp(e, NULL);
    return r;
}

static void done(result *r) {
    free(r->out);
    free(r->err);
}

static int has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

/* a usage error: exit 2, stderr naming `what`, then the command's usage */
static void expect_usage(const char *args, const char *cmd, const char *what) {
    result r = run(args);
    char usage[64];
    snprintf(usage, sizeof usage, "usage: doze %s", cmd);
    CHECK_MSG(r.status == 2, "%s: exit %d, want 2", args, r.status);
    CHECK_MSG(has(r.err, what), "%s: stderr lacks \"%s\":\n%s", args, what, r.err);
    CHECK_MSG(has(r.err, usage), "%s: stderr lacks the usage:\n%s", args, r.err);
    CHECK_MSG(r.n_out == 0, "%s: wrote to stdout", args);
    done(&r);
}

static const char *const commands[] = {"generate", "tokenize", "ppl",  "bench", "gates", "finetune",
                                       "order-ffn", "init",    "convert", "vocab", "train", NULL};

/* Every option a command's help lists is accepted by its parser (given a
 * value of the listed kind it fails only for the missing arguments or
 * required options that follow), and a name one letter off is not. */
static void help_matches_parser(const char *cmd) {
    char args[512];
    snprintf(args, sizeof args, "%s --help", cmd);
    result h = run(args);
    CHECK_MSG(h.status == 0, "%s --help: exit %d", cmd, h.status);
    char usage[64];
    snprintf(usage, sizeof usage, "usage: doze %s", cmd);
    CHECK_MSG(strncmp(h.out, usage, strlen(usage)) == 0, "%s --help starts with:\n%.200s", cmd, h.out);
    int listed = 0;
    for (char *line = h.out; line && *line;) {
        char *eol = strchr(line, '\n');
        if (eol) *eol = '\0';
        char name[64] = "", value[128] = "";
        if ((strncmp(line, "  --", 4) == 0 || strncmp(line, "  -o ", 5) == 0) && strncmp(line, "  --help", 8) != 0) {
            sscanf(line, " %63s %127s", name, value);
            if (strcmp(cmd, "init") == 0 && strcmp(name, "-o") == 0) { /* init needs nothing else: it would run */
                line = eol ? eol + 1 : NULL;
                continue;
            }
            /* "f32|f16|q8_0" -> its first choice; a metavariable -> 1 */
            char *bar = strchr(value, '|');
            if (bar) *bar = '\0';
            int is_flag = value[0] == '\0' || (value[0] >= 'a' && value[0] <= 'z' && !bar);
            /* a help text right after a flag starts lower case; values are upper case or choices */
            if (!bar && !(value[0] >= 'A' && value[0] <= 'Z')) is_flag = 1;
            snprintf(args, sizeof args, "%s %s %s", cmd, name, is_flag ? "" : (bar ? value : "1"));
            result r = run(args);
            CHECK_MSG(r.status == 2 && !has(r.err, "unknown option") && !has(r.err, "expects") &&
                          !has(r.err, "takes one of") && !has(r.err, "needs a value") && has(r.err, "missing"),
                      "doze %s: exit %d:\n%.300s", args, r.status, r.err);
            done(&r);
            snprintf(args, sizeof args, "%s %sx 1", cmd, name);
            r = run(args);
            CHECK_MSG(r.status == 2 && has(r.err, "unknown option"), "doze %s: exit %d", args, r.status);
            done(&r);
            listed++;
        }
        line = eol ? eol + 1 : NULL;
    }
    CHECK_MSG(listed >= 1, "%s --help lists no options", cmd);
    done(&h);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* the ids `doze tokenize` prints */
static int tokenize(const char *model, const char *text, int32_t *ids, int cap) {
    char args[4096];
    snprintf(args, sizeof args, "tokenize %s --text '%s'", model, text);
    result r = run(args);
    int n = 0;
    for (char *p = r.out; n < cap;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)v;
        p = end;
    }
    done(&r);
    return n;
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/test_cli_tmp", DOZE_BUILD_DIR);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    if (system(cmd) != 0) return 1;
    char model[320], text[320], path[512];
    snprintf(model, sizeof model, "%s/m.gguf", dir);
    snprintf(text, sizeof text, "%s/t.txt", dir);
    write_file(text, "one story here.\n<|endoftext|>\nanother one\n");

    /* --version: DOZE_VERSION, which js/package.json must carry too */
    {
        result r = run("--version");
        char want[64];
        snprintf(want, sizeof want, "doze %s\n", DOZE_VERSION);
        CHECK(r.status == 0 && strcmp(r.out, want) == 0);
        done(&r);
        snprintf(path, sizeof path, "%s/js/package.json", DOZE_SOURCE_DIR);
        char *pkg = slurp(path, NULL);
        char field[64];
        snprintf(field, sizeof field, "\"version\": \"%s\"", DOZE_VERSION);
        CHECK_MSG(has(pkg, field), "js/package.json lacks %s", field);
        free(pkg);
    }
    /* the overview: every command, exit 0; no command: exit 2 */
    {
        result r = run("--help");
        CHECK(r.status == 0);
        for (int i = 0; commands[i]; i++) CHECK_MSG(has(r.out, commands[i]), "overview lacks %s", commands[i]);
        done(&r);
        r = run("");
        CHECK(r.status == 2 && has(r.err, "usage: doze COMMAND"));
        done(&r);
        r = run("frobnicate");
        CHECK(r.status == 2 && has(r.err, "unknown command \"frobnicate\""));
        done(&r);
        r = run("help ppl");
        CHECK(r.status == 0 && has(r.out, "usage: doze ppl MODEL TEXTFILE"));
        done(&r);
    }
    for (int i = 0; commands[i]; i++) help_matches_parser(commands[i]);
    /* options that exist are listed where they apply */
    {
        static const struct {
            const char *cmd, *what;
        } listed[] = {
            {"convert", "q4_0"},           {"init", "q4_0"},           {"ppl", "--budget B"},
            {"ppl", "--gates FILE"},       {"ppl", "--calib TEXTFILE"}, {"ppl", "--no-ffn-gates"},
            {"generate", "--no-ffn-gates"}, {"generate", "--min-p P"}, {"generate", "--repeat-penalty R"},
            {"generate", "--repeat-last-n N"}, {"generate", "--frequency-penalty F"},
            {"generate", "--presence-penalty F"}, {"generate", "--keep-last N"}, {"bench", "--skip-table"},
        };
        for (size_t i = 0; i < sizeof listed / sizeof listed[0]; i++) {
            snprintf(cmd, sizeof cmd, "%s --help", listed[i].cmd);
            result r = run(cmd);
            CHECK_MSG(has(r.out, listed[i].what), "doze %s lacks %s", cmd, listed[i].what);
            done(&r);
        }
    }

    snprintf(cmd, sizeof cmd, "init --dim 32 --hidden 64 --layers 2 --heads 2 --vocab 300 --ctx 64 -o %s", model);
    result r = run(cmd);
    CHECK_MSG(r.status == 0, "init: %s", r.err);
    done(&r);

    /* usage errors */
    snprintf(cmd, sizeof cmd, "generate %s --stepz 5", model);
    expect_usage(cmd, "generate", "unknown option --stepz (did you mean --steps?)");
    snprintf(cmd, sizeof cmd, "generate %s --steps", model);
    expect_usage(cmd, "generate", "--steps needs a value");
    snprintf(cmd, sizeof cmd, "generate %s --steps --temp 0", model);
    expect_usage(cmd, "generate", "--steps needs a value (N) before --temp");
    snprintf(cmd, sizeof cmd, "generate %s --steps 12abc", model);
    expect_usage(cmd, "generate", "--steps expects a whole number, got \"12abc\"");
    snprintf(cmd, sizeof cmd, "generate %s --temp hot", model);
    expect_usage(cmd, "generate", "--temp expects a number, got \"hot\"");
    snprintf(cmd, sizeof cmd, "generate %s --temp nan", model);
    expect_usage(cmd, "generate", "--temp: nan is not a finite number");
    snprintf(cmd, sizeof cmd, "generate %s %s", model, text);
    expect_usage(cmd, "generate", "unexpected argument");
    snprintf(cmd, sizeof cmd, "generate %s --no-stop=1", model);
    expect_usage(cmd, "generate", "--no-stop takes no value");
    expect_usage("generate", "generate", "missing MODEL");
    snprintf(cmd, sizeof cmd, "ppl %s %s --budgte 0.5", model, text);
    expect_usage(cmd, "ppl", "unknown option --budgte (did you mean --budget?)");
    snprintf(cmd, sizeof cmd, "ppl %s", model);
    expect_usage(cmd, "ppl", "missing TEXTFILE");
    snprintf(cmd, sizeof cmd, "ppl %s %s --budget 1.5", model, text);
    expect_usage(cmd, "ppl", "--budget must be in (0, 1]");
    snprintf(cmd, sizeof cmd, "init --type q3_k_m -o %s/x.gguf", dir);
    expect_usage(cmd, "init", "--type takes one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs, q2_k, q3_k, q4_k, q5_k, q6_k, q4_k_m, not \"q3_k_m\"");
    snprintf(cmd, sizeof cmd, "init --dim 32 %s/x.gguf", dir);
    expect_usage(cmd, "init", "takes no arguments");
    snprintf(cmd, sizeof cmd, "init --dim 32");
    expect_usage(cmd, "init", "missing -o OUT.gguf");
    snprintf(cmd, sizeof cmd, "convert gguf %s", model);
    expect_usage(cmd, "convert", "missing -o OUT.gguf");
    snprintf(cmd, sizeof cmd, "convert gguf %s %s -o %s/x.gguf", model, model, dir);
    expect_usage(cmd, "convert", "convert gguf takes one IN.gguf");
    snprintf(cmd, sizeof cmd, "tokenize %s", model);
    expect_usage(cmd, "tokenize", "give one of --text and --file");
    snprintf(cmd, sizeof cmd, "bench %s --skip-table layers", model);
    expect_usage(cmd, "bench", "--skip-table takes one model");
    snprintf(cmd, sizeof cmd, "bench %s --draft-k 2", model);
    expect_usage(cmd, "bench", "--draft-budget, --draft-k and --prompt go with --speculative");
    snprintf(cmd, sizeof cmd, "bench %s --speculative --budget 0.5", model);
    expect_usage(cmd, "bench", "--speculative takes one model, and no --budget");
    /* bench --speculative: dense and speculative greedy give the same tokens (checked every round) */
    snprintf(cmd, sizeof cmd, "bench %s --speculative --draft-k 3 --draft-budget 0.5 --steps 24 --rounds 1 --json", model);
    r = run(cmd);
    CHECK_MSG(r.status == 0 && strstr(r.out, "\"identical\":true") && strstr(r.out, "\"fixed_k\":3") &&
                  strstr(r.out, "\"tokens\":24"),
              "bench --speculative: %d %s %s", r.status, r.out, r.err);
    done(&r);
    /* the weights' options without --joint were silently ignored (a gates-only run) */
    static const char *const joint_only[] = {"--weight-lr 1e-3", "--weight-lr-min 1e-5", "--weight-warmup 10",
                                             "--balance-loss 0.1"};
    for (size_t i = 0; i < sizeof joint_only / sizeof joint_only[0]; i++) {
        char want[64];
        snprintf(cmd, sizeof cmd, "finetune %s %s %s -o %s/x.gguf", model, text, joint_only[i], dir);
        snprintf(want, sizeof want, "%.*s goes with --joint", (int)strcspn(joint_only[i], " "), joint_only[i]);
        expect_usage(cmd, "finetune", want);
    }
    /* --no-ffn-gates with --gates was ignored: the given file's FFN rows trained all the same */
    {
        char big[2048];
        snprintf(big, sizeof big, "gates %s -o %s/g.gguf", model, dir);
        result g = run(big);
        CHECK_MSG(g.status == 0, "%s", g.err);
        done(&g);
        snprintf(big, sizeof big, "finetune %s %s --ctx 16 --batch 1 --steps 1 --gates %s/g.gguf --no-ffn-gates -o %s/x.gguf", model, text, dir, dir);
        expect_usage(big, "finetune", "--no-ffn-gates shapes the training-free gates a run starts from");
        /* the same in the commands that calibrate gates when none are given (it did nothing) */
        static const char *const calibration[] = {"--no-ffn-gates", "--calib x.txt", "--protect-layers 2",
                                                  "--random-gates 3"};
        for (size_t i = 0; i < sizeof calibration / sizeof calibration[0]; i++) {
            snprintf(big, sizeof big, "ppl %s %s --gates %s/g.gguf %s", model, text, dir, calibration[i]);
            expect_usage(big, "ppl", "shapes the training-free gates made when no --gates FILE is given");
            snprintf(big, sizeof big, "generate %s --steps 4 --gates %s/g.gguf %s", model, dir, calibration[i]);
            expect_usage(big, "generate", "not with --gates");
        }
    }
    /* one path for both outputs: the model was written over the gates (exit 0, the gates lost) */
    {
        char big[2048];
        snprintf(big, sizeof big, "finetune %s %s --ctx 16 --batch 1 --steps 1 --joint --model-out %s/same.gguf "
                 "-o %s/same.gguf", model, text, dir, dir);
        expect_usage(big, "finetune", "-o (the gates) and --model-out (the model) name the same file");
    }
    snprintf(cmd, sizeof cmd, "train %s -o %s/x.gguf", text, dir);
    expect_usage(cmd, "train", "missing --vocab VOCAB");
    snprintf(cmd, sizeof cmd, "train %s --vocab v --schedule exp -o %s/x.gguf", text, dir);
    expect_usage(cmd, "train", "--schedule takes one of cosine, linear");
    /* "--" ends the options: what follows is positional */
    snprintf(cmd, sizeof cmd, "tokenize --text hi -- %s", model);
    r = run(cmd);
    CHECK_MSG(r.status == 0 && r.out[0] >= '0' && r.out[0] <= '9', "tokenize -- MODEL: %d %s", r.status, r.err);
    done(&r);
    /* --help wins, and generates nothing */
    snprintf(cmd, sizeof cmd, "generate %s --help", model);
    r = run(cmd);
    CHECK(r.status == 0 && strncmp(r.out, "usage: doze generate MODEL", 26) == 0 && r.err[0] == '\0');
    done(&r);
    snprintf(cmd, sizeof cmd, "generate %s --stepz 3 -h", model);
    r = run(cmd);
    CHECK(r.status == 0 && strncmp(r.out, "usage: doze generate", 20) == 0);
    done(&r);
    /* an option's value may look like an option when given with = */
    snprintf(cmd, sizeof cmd, "tokenize %s --text=--help --no-bos", model);
    r = run(cmd);
    CHECK_MSG(r.status == 0 && r.out[0] >= '0' && r.out[0] <= '9', "--text=--help: %d %s", r.status, r.err);
    done(&r);

    /* sampler errors name the one broken rule */
    snprintf(cmd, sizeof cmd, "generate %s --temp -1", model);
    expect_usage(cmd, "generate", "temperature -1 must be >= 0");
    r = run(cmd);
    *strchr(r.err, '\n') = '\0'; /* the message line, not the usage after it */
    CHECK_MSG(!has(r.err, "top_p") && !has(r.err, "top_k"), "%s", r.err);
    done(&r);
    snprintf(cmd, sizeof cmd, "generate %s --top-p 1.5", model);
    expect_usage(cmd, "generate", "top_p 1.5 must be in [0, 1]");
    r = run(cmd);
    *strchr(r.err, '\n') = '\0';
    CHECK_MSG(!has(r.err, "temperature") && !has(r.err, "top_k"), "%s", r.err);
    done(&r);
    snprintf(cmd, sizeof cmd, "generate %s --min-p 2", model);
    expect_usage(cmd, "generate", "min_p 2 must be in [0, 1]");
    snprintf(cmd, sizeof cmd, "generate %s --repeat-penalty 0", model);
    expect_usage(cmd, "generate", "repeat_penalty 0 must be > 0");
    snprintf(cmd, sizeof cmd, "generate %s --repeat-last-n -2", model);
    expect_usage(cmd, "generate", "--repeat-last-n must be -1 or in 0..1073741824");

    /* files: the reason, as the OS gives it */
    snprintf(cmd, sizeof cmd, "generate %s/none.gguf", dir);
    r = run(cmd);
    snprintf(path, sizeof path, "cannot open %s/none.gguf: No such file or directory (ENOENT)", dir);
    CHECK_MSG(r.status == 1 && has(r.err, path), "%s", r.err);
    done(&r);
    snprintf(cmd, sizeof cmd, "generate %s", dir);
    r = run(cmd);
    CHECK_MSG(r.status == 1 && has(r.err, "Is a directory (EISDIR)"), "%s", r.err);
    done(&r);
    snprintf(cmd, sizeof cmd, "init -o %s/no/such/dir/x.gguf", dir);
    r = run(cmd);
    CHECK_MSG(r.status == 1 && has(r.err, "cannot write") && has(r.err, "(ENOENT)"), "%s", r.err);
    done(&r);

    /* a GGUF whose tensor count is larger than its tensors says so */
    {
        size_t n = 0;
        unsigned char *b = test_read_file(model, &n);
        CHECK(b && n > 24);
        if (b) {
            uint64_t count;
            memcpy(&count, b + 8, 8);
            count += 5; /* as a flipped low bit or two would */
            memcpy(b + 8, &count, 8);
            snprintf(path, sizeof path, "%s/flipped.gguf", dir);
            FILE *f = fopen(path, "wb");
            fwrite(b, 1, n, f);
            fclose(f);
            free(b);
            snprintf(cmd, sizeof cmd, "generate %s", path);
            r = run(cmd);
            char want[96];
            snprintf(want, sizeof want, "of the header's %llu", (unsigned long long)count);
            CHECK_MSG(r.status == 1 && has(r.err, want) && !has(r.err, "tensor : "), "%s", r.err);
            done(&r);
        }
    }

    /* long prompts: an error naming both numbers, or --keep-last */
    {
        const char *prompt = "the cat sat on the mat and the dog ran to the park";
        int32_t ids[256];
        int n = tokenize(model, prompt, ids, 256);
        CHECK_MSG(n > 12, "the prompt is %d tokens", n);
        snprintf(cmd, sizeof cmd, "generate %s --prompt '%s' --steps 12", model, prompt);
        r = run(cmd);
        char want[128];
        snprintf(want, sizeof want, "the prompt has %d tokens but the context holds 12", n);
        CHECK_MSG(r.status == 1 && has(r.err, want), "%s", r.err);
        CHECK(r.n_out == 0);
        done(&r);
        snprintf(cmd, sizeof cmd, "generate %s --prompt '%s' --steps 12 --ctx 64", model, prompt);
        r = run(cmd);
        snprintf(want, sizeof want, "the prompt has %d tokens but --steps is 12", n);
        CHECK_MSG(r.status == 1 && has(r.err, want), "%s", r.err);
        done(&r);
        /* the model's own context (64) bounds --ctx */
        snprintf(cmd, sizeof cmd, "generate %s --prompt '%s' --ctx 1000 --steps 1000 --keep-last 2", model, prompt);
        r = run(cmd);
        CHECK_MSG(r.status == 0, "%s", r.err);
        done(&r);
        char trace[320];
        snprintf(trace, sizeof trace, "%s/keep.trace", dir);
        snprintf(cmd, sizeof cmd, "generate %s --prompt '%s' --steps 12 --keep-last 8 --temp 0 --trace %s", model,
                 prompt, trace);
        r = run(cmd);
        CHECK_MSG(r.status == 0, "%s", r.err);
        CHECK(has(r.err, "first"));
        done(&r);
        FILE *f = fopen(trace, "r");
        int in[16], next[16], k = 0;
        while (f && k < 16 && fscanf(f, "%d %d", &in[k], &next[k]) == 2) k++;
        if (f) fclose(f);
        CHECK_MSG(k == 12, "%d steps traced", k); /* one per position */
        CHECK(in[0] == ids[0]);                   /* BOS */
        for (int i = 1; i < 9 && i < k; i++) CHECK_MSG(in[i] == ids[n - 9 + i], "kept token %d", i);
        snprintf(cmd, sizeof cmd, "generate %s --prompt x --keep-last 0", model);
        expect_usage(cmd, "generate", "--keep-last must be >= 1");
    }

    /* sampling options: seeded and repeatable; each changes the draw */
    {
        const char *base = "--prompt 'the cat' --steps 48 --no-stop --temp 1.5 --seed 5";
        snprintf(cmd, sizeof cmd, "generate %s %s", model, base);
        result plain = run(cmd);
        CHECK(plain.status == 0 && plain.n_out > 10);
        result again = run(cmd);
        CHECK(strcmp(plain.out, again.out) == 0);
        done(&again);
        static const char *const extra[] = {"--repeat-penalty 3", "--frequency-penalty 2",
                                            "--presence-penalty 4", "--min-p 0.3", "--top-k 3 --top-p 0.5"};
        for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) {
            snprintf(cmd, sizeof cmd, "generate %s %s %s", model, base, extra[i]);
            result a = run(cmd), b = run(cmd);
            CHECK_MSG(a.status == 0, "%s: %s", extra[i], a.err);
            CHECK_MSG(strcmp(a.out, b.out) == 0, "%s: not repeatable", extra[i]);
            CHECK_MSG(strcmp(a.out, plain.out) != 0, "%s changes nothing", extra[i]);
            done(&a);
            done(&b);
        }
        /* a window of 0 turns the penalties off */
        snprintf(cmd, sizeof cmd, "generate %s %s --repeat-penalty 3 --repeat-last-n 0", model, base);
        result off = run(cmd);
        CHECK(off.status == 0 && strcmp(off.out, plain.out) == 0);
        done(&off);
        done(&plain);
    }

    /* Runs that write a model and its gate file write both or neither: a
     * model without its gates (the gate file's path unwritable, or the model
     * not all written) used to be left behind with exit 1, looking like a
     * result. finetune --joint and train --gates. */
    {
        char story_text[320], model_out[320], gates_out[320], vocab[320], big[4096];
        snprintf(story_text, sizeof story_text, "%s/stories.txt", dir);
        char *s = malloc(20000);
        s[0] = '\0';
        for (int i = 0; i < 60; i++)
            strcat(s, i % 2 ? "the dog ran to the park and the cat sat on the mat.\n<|endoftext|>\n"
                            : "a cat had a ball and a dog had a big red ball too.\n<|endoftext|>\n");
        write_file(story_text, s);
        free(s);
        snprintf(model_out, sizeof model_out, "%s/joint.gguf", dir);
        snprintf(gates_out, sizeof gates_out, "%s/joint.gates.gguf", dir);
        const char *ft = "--steps 1 --ctx 16 --batch 2 --quiet --joint";
        snprintf(big, sizeof big, "finetune %s %s %s --model-out %s -o %s/no/such/dir/g.gguf", model, story_text, ft,
                 model_out, dir);
        r = run(big);
        CHECK_MSG(r.status == 1 && has(r.err, "cannot write") && has(r.err, "nothing written"), "%s", r.err);
        CHECK_MSG(access(model_out, F_OK) != 0, "finetune --joint left %s without its gates", model_out);
        done(&r);
        if (access("/dev/full", W_OK) == 0) { /* the model not all written: its gates go too */
            snprintf(big, sizeof big, "finetune %s %s %s --model-out /dev/full -o %s", model, story_text, ft, gates_out);
            r = run(big);
            CHECK_MSG(r.status == 1 && has(r.err, "/dev/full"), "%s", r.err);
            CHECK_MSG(access(gates_out, F_OK) != 0, "finetune --joint left %s without its model", gates_out);
            done(&r);
        }
        snprintf(big, sizeof big, "finetune %s %s %s --model-out %s -o %s", model, story_text, ft, model_out, gates_out);
        r = run(big);
        CHECK_MSG(r.status == 0 && access(model_out, F_OK) == 0 && access(gates_out, F_OK) == 0, "%s", r.err);
        done(&r);
        snprintf(big, sizeof big, "gates %s --calib %s -o %s/no/such/dir/g.gguf", model, story_text, dir);
        r = run(big);
        CHECK_MSG(r.status == 1 && has(r.err, "cannot write"), "%s", r.err);
        done(&r);
        remove(model_out);
        snprintf(vocab, sizeof vocab, "%s/v.gguf", dir);
        snprintf(big, sizeof big, "vocab %s --size 300 -o %s", story_text, vocab);
        r = run(big);
        CHECK_MSG(r.status == 0, "%s", r.err);
        done(&r);
        snprintf(big, sizeof big, "train %s --vocab %s --dim 16 --layers 1 --heads 2 --ctx 16 --batch 2 --steps 1 "
                 "--gates -o %s --gates-out %s/no/such/dir/g.gguf", story_text, vocab, model_out, dir);
        r = run(big);
        CHECK_MSG(r.status == 1 && has(r.err, "cannot write") && has(r.err, "nothing written"), "%s", r.err);
        CHECK_MSG(access(model_out, F_OK) != 0, "train --gates left %s without its gates", model_out);
        done(&r);
        snprintf(big, sizeof big, "train %s --vocab %s --dim 16 --layers 1 --heads 2 --ctx 16 --batch 2 --steps 1 "
                 "--gates -o %s --gates-out %s", story_text, vocab, model_out, model_out);
        expect_usage(big, "train", "-o (the model) and --gates-out (its gates) name the same file");

        /* A checkpoint save that fails (here a file size limit, as a full disk
         * would) keeps the previous checkpoint: the file was opened for
         * writing (emptied) and, incomplete, deleted, so the run's resume
         * point was lost with the save. */
        char ckpt[320];
        snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
        snprintf(big, sizeof big, "train %s --vocab %s --dim 32 --layers 2 --heads 2 --ctx 16 --batch 2 --steps 2 "
                 "--ckpt %s -o %s", story_text, vocab, ckpt, model_out);
        r = run(big);
        CHECK_MSG(r.status == 0, "%s", r.err);
        done(&r);
        size_t n0 = 0;
        unsigned char *before = test_read_file(ckpt, &n0);
        CHECK(before && n0 > 8192);
        /* at most half the checkpoint fits (ulimit -f counts 512- or 1024-byte blocks) */
        snprintf(big, sizeof big, "sh -c 'trap \"\" XFSZ; ulimit -f %zu; %s train %s --resume %s --steps 4 --ckpt %s -o %s' "
                 "> %s/out.txt 2> %s/err.txt", n0 / 4096, DOZE_CLI, story_text, ckpt, ckpt, model_out, dir, dir);
        const int status = system(big);
        char errs[320];
        snprintf(errs, sizeof errs, "%s/err.txt", dir);
        char *err = slurp(errs, NULL);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 1 && has(err, "cannot write"), "%d: %s", status, err);
        size_t n1 = 0;
        unsigned char *after = test_read_file(ckpt, &n1);
        CHECK_MSG(after && n1 == n0 && memcmp(before, after, n0) == 0,
                  "the failed save did not keep the checkpoint (%zu bytes, was %zu): %s", n1, n0, err);
        free(err);
        free(before);
        free(after);
        /* and it still resumes */
        snprintf(big, sizeof big, "train %s --resume %s --steps 3 --ckpt %s -o %s", story_text, ckpt, ckpt, model_out);
        r = run(big);
        CHECK_MSG(r.status == 0, "%s", r.err);
        done(&r);
    }

    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_finish("test_cli");
}
