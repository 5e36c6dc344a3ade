/* test_config.c: the configuration system (io/config.c, io/config_keys.c).
 *
 * Every input is a string in this file, written at test time into a mkdtemp directory, so
 * each test shows what it feeds in. Error tests assert the one-line message names the file,
 * the line and the key. Table-wide tests iterate ssl_config_keys, so they also hold for rows
 * added later: a bad new row fails test_table_is_sane or test_round_trip_every_key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"

struct fixture {
    char dir[64];   /* the mkdtemp directory */
    char path[128]; /* the job file of the current test */
};

static int group_setup(void **state)
{
    static struct fixture fx;
    snprintf(fx.dir, sizeof fx.dir, "/tmp/test_config.XXXXXX");
    if (mkdtemp(fx.dir) == NULL) return -1;
    *state = &fx;
    return 0;
}

/* Also removes what a failed test left behind. */
static int group_teardown(void **state)
{
    struct fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d == NULL) return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[400];
        snprintf(path, sizeof path, "%s/%s", fx->dir, e->d_name);
        if (e->d_name[0] != '.') unlink(path);
    }
    closedir(d);
    return rmdir(fx->dir);
}

/* Writes yaml to <dir>/<name> and returns the path (valid until the next call). */
static const char *write_job(void **state, const char *name, const char *yaml)
{
    struct fixture *fx = *state;
    snprintf(fx->path, sizeof fx->path, "%s/%s", fx->dir, name);
    FILE *f = fopen(fx->path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(yaml, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return fx->path;
}

static struct ssl_config *fresh(void)
{
    struct ssl_config *cfg = NULL;
    struct ssl_error err = {0};
    enum ssl_status st = ssl_config_create(&cfg, &err);
    if (st != SSL_OK) fail_msg("ssl_config_create: %s", err.msg);
    return cfg;
}

/* Loads yaml as <name>; returns the status, the message in err. */
static enum ssl_status load_yaml(void **state, struct ssl_config *cfg, const char *name,
                                 const char *yaml, struct ssl_error *err)
{
    const char *path = write_job(state, name, yaml);
    memset(err, 0, sizeof *err);
    enum ssl_status st = ssl_config_load_file(cfg, path, err);
    assert_int_equal(unlink(path), 0);
    return st;
}

static void load_ok(void **state, struct ssl_config *cfg, const char *yaml)
{
    struct ssl_error err = {0};
    if (load_yaml(state, cfg, "ok.yaml", yaml, &err) != SSL_OK) fail_msg("load failed: %s", err.msg);
}

static void set_ok(struct ssl_config *cfg, const char *arg)
{
    struct ssl_error err = {0};
    if (ssl_config_set_arg(cfg, arg, &err) != SSL_OK) fail_msg("%s: %s", arg, err.msg);
}

/* Returns the message of a rejected override. */
static const char *set_bad(struct ssl_config *cfg, const char *arg, struct ssl_error *err)
{
    memset(err, 0, sizeof *err);
    enum ssl_status st = ssl_config_set_arg(cfg, arg, err);
    if (st != SSL_E_USAGE) fail_msg("'%s' was accepted (status %d)", arg, (int)st);
    if (strchr(err->msg, '\n')) fail_msg("message is not one line: %s", err->msg);
    return err->msg;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL) fail_msg("'%s' not found in '%s'", needle, haystack);
}

static void assert_list(const struct ssl_config *cfg, const char *key, int n, const int64_t *want)
{
    int64_t got[16] = {0};
    assert_int_equal(ssl_config_int_list(cfg, key, got, 16), n);
    for (int i = 0; i < n; i++) assert_int_equal(got[i], want[i]);
}

/* ---- defaults, files, overrides ---- */

static void test_defaults(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    assert_int_equal(ssl_config_int(cfg, "run.seed"), 0);
    assert_int_equal(ssl_config_int(cfg, "data.batch"), 256);
    assert_string_equal(ssl_config_str(cfg, "run.name"), "");
    assert_string_equal(ssl_config_str(cfg, "run.dir"), "runs");
    assert_string_equal(ssl_config_str(cfg, "model.backbone"), "convnet");
    assert_string_equal(ssl_config_str(cfg, "model.projector.last_bn"), "none");
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.05);
    assert_true(ssl_config_float(cfg, "model.bn.eps") == 1e-5);
    assert_true(ssl_config_float(cfg, "optim.predictor_lr") == -1.0);
    assert_false(ssl_config_bool(cfg, "optim.lars.clip"));
    assert_true(ssl_config_bool(cfg, "model.projector.last_bias"));
    assert_list(cfg, "model.mlp.hidden", 2, (const int64_t[]){512, 512});
    assert_list(cfg, "model.projector.hidden", 1, (const int64_t[]){2048});
    assert_int_equal(ssl_config_int_list(cfg, "model.predictor.hidden", NULL, 0), 0);
    char *text = ssl_config_serialize(cfg, true);
    assert_contains(text, "  lr: 0.05  # from default\n");
    free(text);
    ssl_config_free(cfg);
}

static void test_nested_yaml_flattens(void **state)
{
    struct ssl_config *cfg = fresh();
    const char *yaml = "# a job file\n"
                       "run:\n"
                       "  seed: 42\n"
                       "  name: \"my run\"\n"
                       "model:\n"
                       "  backbone: resnet18\n"
                       "  mlp: {hidden: [1024, 256]}\n"
                       "  bn:\n"
                       "    eps: 1.0e-3\n"
                       "  projector:\n"
                       "    hidden: &w [4096, 4096]\n"
                       "  predictor:\n"
                       "    hidden: *w\n"
                       "optim.lr: 0.3\n"
                       "optim:\n"
                       "  lars: {eta: 0.001, clip: yes}\n"
                       "ema:\n"
                       "  # base: 0.99   every key of a group commented out\n";
    const char *path = write_job(state, "nested.yaml", yaml);
    struct ssl_error err = {0};
    if (ssl_config_load_file(cfg, path, &err) != SSL_OK) fail_msg("%s", err.msg);
    assert_int_equal(ssl_config_int(cfg, "run.seed"), 42);
    assert_string_equal(ssl_config_str(cfg, "run.name"), "my run");
    assert_string_equal(ssl_config_str(cfg, "model.backbone"), "resnet18");
    assert_list(cfg, "model.mlp.hidden", 2, (const int64_t[]){1024, 256});
    assert_list(cfg, "model.projector.hidden", 2, (const int64_t[]){4096, 4096});
    assert_list(cfg, "model.predictor.hidden", 2, (const int64_t[]){4096, 4096});
    assert_true(ssl_config_float(cfg, "model.bn.eps") == 1e-3);
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.3);
    assert_true(ssl_config_float(cfg, "optim.lars.eta") == 0.001);
    assert_true(ssl_config_bool(cfg, "optim.lars.clip"));
    assert_true(ssl_config_float(cfg, "ema.base") == 0.996);
    assert_true(ssl_config_float(cfg, "optim.momentum") == 0.9); /* untouched: default */

    char *text = ssl_config_serialize(cfg, true), want[256];
    snprintf(want, sizeof want, "  seed: 42  # from %s:3\n", path);
    assert_contains(text, want);
    snprintf(want, sizeof want, "    eta: 0.001  # from %s:16\n", path);
    assert_contains(text, want);
    free(text);
    assert_int_equal(unlink(path), 0);
    ssl_config_free(cfg);
}

static void test_overrides_beat_the_file(void **state)
{
    struct ssl_config *cfg = fresh();
    load_ok(state, cfg, "optim:\n  lr: 0.3\ndata:\n  batch: 512\n");
    set_ok(cfg, "optim.lr=0.5");
    set_ok(cfg, "run.name=cli");
    set_ok(cfg, "run.name=cli again"); /* the last override wins */
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.5);
    assert_int_equal(ssl_config_int(cfg, "data.batch"), 512);
    assert_string_equal(ssl_config_str(cfg, "run.name"), "cli again");
    /* A second file merges over the first; a key in two files is not "given twice". */
    load_ok(state, cfg, "data:\n  batch: 1024\n");
    assert_int_equal(ssl_config_int(cfg, "data.batch"), 1024);
    char *text = ssl_config_serialize(cfg, true);
    assert_contains(text, "  lr: 0.5  # from command line\n");
    free(text);
    ssl_config_free(cfg);
}

/* ---- errors ---- */

struct bad_file {
    const char *yaml;
    int line;         /* the message starts "<path>:<line>:" */
    const char *key;  /* NULL when no key applies (syntax errors) */
    const char *text; /* what is wrong */
};

static const struct bad_file bad_files[] = {
    {"optim:\n  lrr: 0.1\n", 2, "optim.lrr", "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"},
    {"optm:\n  lr: 0.1\n", 2, "optm.lr", "did you mean 'optim.lr'?"},
    {"optim:\n  eta: 0.1\n", 2, "optim.eta", "did you mean 'optim.lars.eta'?"},
    {"data:\n  batch_size: 64\n", 2, "data.batch_size", "did you mean 'data.batch'?"},
    {"zzz: 1\n", 1, "zzz", "unknown key 'zzz'"},
    {"run:\n  threads: 1025\n", 2, "run.threads", "'1025' is out of range [0, 1024]"},
    {"optim:\n  momentum: 0.5\n  lr: -1\n", 3, "optim.lr", "'-1' is out of range [0, 100]"},
    {"model:\n  bn:\n    eps: 0\n", 3, "model.bn.eps", "'0' is out of range (0, 1]"},
    {"optim:\n  adamw:\n    beta1: 1\n", 3, "optim.adamw.beta1", "'1' is out of range [0, 1)"},
    {"model:\n  backbone: vgg\n", 2, "model.backbone", "'vgg' is not one of convnet|resnet18|mlp"},
    {"optim:\n  lars:\n    clip: maybe\n", 3, "optim.lars.clip", "'maybe' is not a boolean"},
    {"optim:\n  lr: 0.1\n  lr: 0.2\n", 3, "optim.lr", "given twice (first at line 2)"},
    {"optim:\n  lr: 0.1\noptim.lr: 0.2\n", 3, "optim.lr", "given twice (first at line 2)"},
    {"optim:\n  lr: 0.1\noptim:\n  momentum: 0.5\n", 3, "optim", "given twice (first at line 1)"},
    {"optim:\n  lr:\n    base: 0.1\n", 2, "optim.lr", "expected a number, got a mapping"},
    {"optim: 0.1\n", 1, "optim", "expected a mapping (a group of keys like 'optim.name'), got a scalar"},
    {"model:\n  mlp: [1, 2]\n", 2, "model.mlp", "expected a mapping"},
    {"optim:\n  lr:\n  momentum: 0.5\n", 2, "optim.lr", "empty value (expected a number)"},
    {"run:\n  seed: ''\n", 2, "run.seed", "empty value (expected an integer)"},
    {"model:\n  backbone:\n", 2, "model.backbone", "empty value (expected convnet|resnet18|mlp)"},
    {"optim:\n  lr: .inf\n", 2, "optim.lr", "'.inf' is not finite"},
    {"optim:\n  lr: nan\n", 2, "optim.lr", "'nan' is not finite"},
    {"optim:\n  lr: 1e999\n", 2, "optim.lr", "'1e999' is not finite"},
    {"optim:\n  lr: 0.1abc\n", 2, "optim.lr", "'0.1abc' is not a number"},
    {"data:\n  batch: 256x\n", 2, "data.batch", "'256x' is not an integer"},
    {"data:\n  batch: 2.5\n", 2, "data.batch", "'2.5' is not an integer"},
    {"run:\n  seed: 99999999999999999999\n", 2, "run.seed", "does not fit a 64-bit integer"},
    {"optim:\n  lr: [0.1, 0.2]\n", 2, "optim.lr", "expected a number, got a sequence"},
    {"model:\n  backbone: [mlp]\n", 2, "model.backbone", "got a sequence"},
    {"run:\n  name: {a: 1}\n", 2, "run.name", "expected a string, got a mapping"},
    {"model:\n  mlp:\n    hidden:\n      - 512\n      - 0\n", 5, "model.mlp.hidden",
     "'0' is out of range [1, 1048576]"},
    {"model:\n  mlp:\n    hidden: [512, abc]\n", 3, "model.mlp.hidden", "'abc' is not an integer"},
    {"model:\n  mlp:\n    hidden: [[1]]\n", 3, "model.mlp.hidden",
     "expected an integer element, got a sequence"},
    {"model:\n  mlp:\n    hidden: [512, ~]\n", 3, "model.mlp.hidden", "empty list element"},
    {"model:\n  mlp:\n    hidden: '512,,3'\n", 3, "model.mlp.hidden", "has an empty element"},
    {"run:\n  name: \"a\\0b\"\n", 2, "run.name", "NUL character"},
    {"\"run\\0x\": 1\n", 1, "run", "contains a NUL character"},
    {"a: &x {b: *x}\n", 1, "a.b.b.b", "(longer than 254 bytes)"},
    {"- a\n- b\n", 1, NULL, "expected a mapping of keys at the top level, got a sequence"},
    {"? [a, b]\n: 1\n", 1, NULL, "keys must be names, got a sequence"},
    {"optim:\n  lr: 0.1\n---\nrun:\n  seed: 1\n", 4, NULL, "a second YAML document"},
    {"run:\n  name: \xff\n", 2, NULL, "not YAML text: invalid leading UTF-8 octet"},
    {"optim:\n  lr: 0.1\n momentum: 0.9\n", 3, NULL, "YAML syntax error: "},
    {"optim: {lr: 0.1\n", 2, NULL,
     "YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping at line 1)"},
    {"optim:\n  lr: *nowhere\n", 2, NULL, "found undefined alias"},
};

static void test_file_errors(void **state)
{
    for (size_t c = 0; c < sizeof bad_files / sizeof bad_files[0]; c++) {
        const struct bad_file *b = &bad_files[c];
        struct ssl_config *cfg = fresh();
        struct ssl_error err;
        const char *path = write_job(state, "bad.yaml", b->yaml);
        char head[256];
        snprintf(head, sizeof head, "%s:%d:", path, b->line);
        memset(&err, 0, sizeof err);
        enum ssl_status st = ssl_config_load_file(cfg, path, &err);
        if (st != SSL_E_USAGE) fail_msg("case %zu accepted (status %d):\n%s", c, (int)st, b->yaml);
        if (strncmp(err.msg, head, strlen(head)) != 0)
            fail_msg("case %zu: message '%s' does not start with '%s'", c, err.msg, head);
        if (b->key) assert_contains(err.msg, b->key);
        assert_contains(err.msg, b->text);
        assert_null(strchr(err.msg, '\n'));
        assert_int_equal(unlink(path), 0);
        ssl_config_free(cfg);
    }
}

static void test_file_cannot_be_read(void **state)
{
    struct fixture *fx = *state;
    struct ssl_config *cfg = fresh();
    struct ssl_error err = {0};
    char path[160], want[256];
    snprintf(path, sizeof path, "%s/missing.yaml", fx->dir);
    assert_int_equal(ssl_config_load_file(cfg, path, &err), SSL_E_USAGE);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.msg, want);
    memset(&err, 0, sizeof err);
    assert_int_equal(ssl_config_load_file(cfg, fx->dir, &err), SSL_E_USAGE);
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", fx->dir);
    assert_string_equal(err.msg, want);
    ssl_config_free(cfg);
}

static void test_empty_file_sets_nothing(void **state)
{
    struct ssl_config *cfg = fresh();
    load_ok(state, cfg, "");
    load_ok(state, cfg, "# only a comment\n");
    load_ok(state, cfg, "~\n");
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.05);
    ssl_config_free(cfg);
}

static void test_command_line_errors(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    assert_string_equal(set_bad(cfg, "model.backbone=vgg", &err),
                        "command line: model.backbone: 'vgg' is not one of convnet|resnet18|mlp");
    assert_string_equal(set_bad(cfg, "optim.lrr=1", &err),
                        "command line: unknown key 'optim.lrr' (did you mean 'optim.lr'?)");
    assert_string_equal(set_bad(cfg, "optim.lr=-1", &err),
                        "command line: optim.lr: '-1' is out of range [0, 100]");
    assert_string_equal(set_bad(cfg, "optim.lr", &err), "command line: 'optim.lr' is not key=value");
    assert_string_equal(set_bad(cfg, "=3", &err), "command line: '=3' is not key=value");
    assert_contains(set_bad(cfg, "optim=1", &err), "command line: 'optim' is a group of keys");
    assert_string_equal(set_bad(cfg, "optim.lr=", &err),
                        "command line: optim.lr: empty value (expected a number)");
    assert_contains(set_bad(cfg, "model.mlp.hidden=1,,2", &err),
                    "command line: model.mlp.hidden: '1,,2' has an empty element");
    assert_contains(set_bad(cfg, "run.name=\xc3(", &err), "command line: run.name: ");
    assert_contains(err.msg, "is not valid UTF-8");
    assert_contains(set_bad(cfg, "nothing.like.any.key=1", &err),
                    "unknown key 'nothing.like.any.key' (`ssltrain help config` lists them)");
    /* A rejected value leaves the old one. */
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.05);
    ssl_config_free(cfg);
}

/* ---- value syntax and ranges ---- */

static void test_int_range(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    set_ok(cfg, "run.threads=0");
    set_ok(cfg, "run.threads=1024");
    set_ok(cfg, "run.threads=+7");
    assert_int_equal(ssl_config_int(cfg, "run.threads"), 7);
    set_ok(cfg, "run.threads=007");
    assert_int_equal(ssl_config_int(cfg, "run.threads"), 7);
    assert_contains(set_bad(cfg, "run.threads=1025", &err), "out of range [0, 1024]");
    assert_contains(set_bad(cfg, "run.threads=-1", &err), "out of range [0, 1024]");
    set_ok(cfg, "run.seed=9007199254740992");
    assert_int_equal(ssl_config_int(cfg, "run.seed"), INT64_C(9007199254740992));
    assert_contains(set_bad(cfg, "run.seed=9007199254740993", &err), "out of range [0, 9007199254740992]");
    set_ok(cfg, "optim.warmup_steps=1099511627776");
    assert_contains(set_bad(cfg, "optim.warmup_steps=1099511627777", &err), "out of range");
    assert_contains(set_bad(cfg, "run.seed=9223372036854775808", &err), "does not fit a 64-bit integer");
    assert_contains(set_bad(cfg, "run.seed=-9223372036854775809", &err), "does not fit a 64-bit integer");
    const char *not_ints[] = {"run.seed= 5", "run.seed=5 ", "run.seed=0x10", "run.seed=1e3",
                              "run.seed=5.0", "run.seed=-", "run.seed=1_000"};
    for (size_t i = 0; i < sizeof not_ints / sizeof not_ints[0]; i++)
        assert_contains(set_bad(cfg, not_ints[i], &err), "is not an integer");
    ssl_config_free(cfg);
}

static void test_float_range(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    assert_contains(set_bad(cfg, "model.bn.eps=0", &err), "out of range (0, 1]");
    assert_contains(set_bad(cfg, "model.bn.eps=-0", &err), "out of range (0, 1]");
    set_ok(cfg, "model.bn.eps=1");
    set_ok(cfg, "model.bn.eps=1e-300");
    assert_true(ssl_config_float(cfg, "model.bn.eps") == 1e-300);
    assert_contains(set_bad(cfg, "optim.adamw.beta1=1", &err), "out of range [0, 1)");
    set_ok(cfg, "optim.adamw.beta1=0.9999999999999999");
    set_ok(cfg, "optim.adamw.beta1=0");
    set_ok(cfg, "optim.lr=100");
    assert_contains(set_bad(cfg, "optim.lr=100.00000000000003", &err), "out of range [0, 100]");
    set_ok(cfg, "optim.lr=0x1p-4");
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.0625);
    set_ok(cfg, "optim.predictor_lr=-1");
    assert_contains(set_bad(cfg, "optim.predictor_lr=-1.5", &err), "out of range [-1, 100]");
    const char *non_finite[] = {"optim.lr=nan", "optim.lr=inf", "optim.lr=-inf", "optim.lr=1e999",
                                "optim.lr=.inf", "optim.lr=-.Inf", "optim.lr=.NaN", "optim.lr=infinity"};
    for (size_t i = 0; i < sizeof non_finite / sizeof non_finite[0]; i++)
        assert_contains(set_bad(cfg, non_finite[i], &err), "is not finite");
    const char *not_numbers[] = {"optim.lr=1,5", "optim.lr= 1", "optim.lr=1 ", "optim.lr=one",
                                 "optim.lr=."};
    for (size_t i = 0; i < sizeof not_numbers / sizeof not_numbers[0]; i++)
        assert_contains(set_bad(cfg, not_numbers[i], &err), "is not a number");
    ssl_config_free(cfg);
}

static void test_enum_choices(void **state)
{
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    const char *ok[] = {"model.backbone=convnet", "model.backbone=resnet18", "model.backbone=mlp"};
    for (size_t i = 0; i < 3; i++) {
        set_ok(cfg, ok[i]);
        assert_string_equal(ssl_config_str(cfg, "model.backbone"), strchr(ok[i], '=') + 1);
    }
    assert_contains(set_bad(cfg, "model.backbone=ResNet18", &err), "is not one of convnet|resnet18|mlp");
    assert_contains(set_bad(cfg, "model.backbone=mlp ", &err), "is not one of");
    assert_contains(set_bad(cfg, "model.backbone=", &err), "empty value (expected convnet|resnet18|mlp)");
    load_ok(state, cfg, "model:\n  projector:\n    last_bn: noaffine\n");
    assert_string_equal(ssl_config_str(cfg, "model.projector.last_bn"), "noaffine");
    ssl_config_free(cfg);
}

static void test_bool_spellings(void **state)
{
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON", "1"};
    const char *no[] = {"false", "False", "no", "NO", "off", "Off", "0"};
    char arg[64];
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        set_ok(cfg, "optim.lars.clip=false");
        snprintf(arg, sizeof arg, "optim.lars.clip=%s", yes[i]);
        set_ok(cfg, arg);
        assert_true(ssl_config_bool(cfg, "optim.lars.clip"));
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        set_ok(cfg, "optim.lars.clip=true");
        snprintf(arg, sizeof arg, "optim.lars.clip=%s", no[i]);
        set_ok(cfg, arg);
        assert_false(ssl_config_bool(cfg, "optim.lars.clip"));
    }
    const char *bad[] = {"optim.lars.clip=maybe", "optim.lars.clip=2", "optim.lars.clip=y",
                         "optim.lars.clip=truee"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_contains(set_bad(cfg, bad[i], &err), "is not a boolean (true|false|yes|no|on|off|1|0)");
    assert_contains(set_bad(cfg, "optim.lars.clip=", &err), "empty value (expected true or false)");
    load_ok(state, cfg, "optim:\n  lars:\n    clip: on\nmodel:\n  projector:\n    last_bias: 'no'\n");
    assert_true(ssl_config_bool(cfg, "optim.lars.clip"));
    assert_false(ssl_config_bool(cfg, "model.projector.last_bias"));
    ssl_config_free(cfg);
}

static void test_int_lists(void **state)
{
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    load_ok(state, cfg, "model:\n  mlp:\n    hidden:\n      - 8\n      - 16\n      - 32\n");
    assert_list(cfg, "model.mlp.hidden", 3, (const int64_t[]){8, 16, 32});
    load_ok(state, cfg, "model:\n  mlp:\n    hidden: []\n");
    assert_list(cfg, "model.mlp.hidden", 0, NULL);
    load_ok(state, cfg, "model:\n  projector:\n    hidden:\n");
    assert_list(cfg, "model.projector.hidden", 0, NULL);
    load_ok(state, cfg, "model:\n  predictor:\n    hidden: 512\n");
    assert_list(cfg, "model.predictor.hidden", 1, (const int64_t[]){512});
    load_ok(state, cfg, "model:\n  predictor:\n    hidden: \"4096, 256\"\n");
    assert_list(cfg, "model.predictor.hidden", 2, (const int64_t[]){4096, 256});

    set_ok(cfg, "model.mlp.hidden=1024,256");
    assert_list(cfg, "model.mlp.hidden", 2, (const int64_t[]){1024, 256});
    set_ok(cfg, "model.mlp.hidden=[8, 16, 32]");
    assert_list(cfg, "model.mlp.hidden", 3, (const int64_t[]){8, 16, 32});
    set_ok(cfg, "model.mlp.hidden= 3 , 4 ");
    assert_list(cfg, "model.mlp.hidden", 2, (const int64_t[]){3, 4});
    set_ok(cfg, "model.mlp.hidden=");
    assert_list(cfg, "model.mlp.hidden", 0, NULL);
    set_ok(cfg, "model.mlp.hidden=[]");
    assert_list(cfg, "model.mlp.hidden", 0, NULL);
    set_ok(cfg, "model.mlp.hidden=1048576");

    const char *bad[] = {"model.mlp.hidden=1,", "model.mlp.hidden=,", "model.mlp.hidden=1,,2",
                         "model.mlp.hidden=[1,2", "model.mlp.hidden=1;2", "model.mlp.hidden=0",
                         "model.mlp.hidden=1048577", "model.mlp.hidden=[[1]]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_contains(set_bad(cfg, bad[i], &err), "command line: model.mlp.hidden: '");

    set_ok(cfg, "model.mlp.hidden=5,6,7");
    int64_t one[1] = {0};
    assert_int_equal(ssl_config_int_list(cfg, "model.mlp.hidden", one, 1), 3); /* copies 1 of 3 */
    assert_int_equal(one[0], 5);
    ssl_config_free(cfg);
}

static void test_strings(void **state)
{
    struct ssl_config *cfg = fresh();
    load_ok(state, cfg, "run:\n  name: 'single # quoted'\n");
    assert_string_equal(ssl_config_str(cfg, "run.name"), "single # quoted");
    load_ok(state, cfg, "run:\n  name: 123\n");
    assert_string_equal(ssl_config_str(cfg, "run.name"), "123");
    load_ok(state, cfg, "run:\n  name: ~\n");
    assert_string_equal(ssl_config_str(cfg, "run.name"), "");
    load_ok(state, cfg, "run:\n  name: \"tab\\there \\u00fc\"\n");
    assert_string_equal(ssl_config_str(cfg, "run.name"), "tab\there \xc3\xbc");
    set_ok(cfg, "run.name=a=b");
    assert_string_equal(ssl_config_str(cfg, "run.name"), "a=b");
    set_ok(cfg, "run.dir=");
    assert_string_equal(ssl_config_str(cfg, "run.dir"), "");
    ssl_config_free(cfg);
}

/* Nested YAML files fail with a colon in a plain scalar: check that this one did. */
static void test_plain_scalar_with_colon_is_an_error(void **state)
{
    struct ssl_config *cfg = fresh();
    struct ssl_error err;
    assert_int_equal(load_yaml(state, cfg, "colon.yaml", "run:\n  name: a: b\n", &err), SSL_E_USAGE);
    assert_contains(err.msg, "colon.yaml:2:");
    assert_contains(err.msg, "YAML syntax error");
    ssl_config_free(cfg);
}

/* ---- serialization ---- */

static void assert_same_values(const struct ssl_config *a, const struct ssl_config *b)
{
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        switch (k->type) {
        case SSL_KEY_INT: assert_int_equal(ssl_config_int(a, k->key), ssl_config_int(b, k->key)); break;
        case SSL_KEY_FLOAT: {
            double x = ssl_config_float(a, k->key), y = ssl_config_float(b, k->key);
            if (memcmp(&x, &y, sizeof x) != 0) fail_msg("%s: %.17g != %.17g", k->key, x, y);
            break;
        }
        case SSL_KEY_BOOL: assert_int_equal(ssl_config_bool(a, k->key), ssl_config_bool(b, k->key)); break;
        case SSL_KEY_STRING:
        case SSL_KEY_ENUM: assert_string_equal(ssl_config_str(a, k->key), ssl_config_str(b, k->key)); break;
        case SSL_KEY_INT_LIST: {
            int64_t la[64], lb[64];
            int na = ssl_config_int_list(a, k->key, la, 64), nb = ssl_config_int_list(b, k->key, lb, 64);
            assert_int_equal(na, nb);
            for (int j = 0; j < na && j < 64; j++) assert_int_equal(la[j], lb[j]);
            break;
        }
        case SSL_KEY_FLOAT_LIST: {
            int na = ssl_config_list_length(a, k->key);
            assert_int_equal(na, ssl_config_list_length(b, k->key));
            for (int j = 0; j < na; j++) {
                double x = ssl_config_float_at(a, k->key, j), y = ssl_config_float_at(b, k->key, j);
                if (memcmp(&x, &y, sizeof x) != 0) fail_msg("%s[%d]: %.17g != %.17g", k->key, j, x, y);
            }
            break;
        }
        }
    }
}

/* serialize -> parse_serialized into defaults -> the same getters, and the same text again. */
static void assert_round_trip(const struct ssl_config *cfg)
{
    for (int with_origin = 0; with_origin < 2; with_origin++) {
        char *text = ssl_config_serialize(cfg, with_origin);
        struct ssl_config *back = fresh();
        struct ssl_error err = {0};
        if (ssl_config_parse_serialized(back, text, "rank 0", &err) != SSL_OK)
            fail_msg("%s\n%s", err.msg, text);
        assert_same_values(cfg, back);
        char *again = ssl_config_serialize(back, false), *plain = ssl_config_serialize(cfg, false);
        assert_string_equal(again, plain);
        free(again);
        free(plain);
        free(text);
        ssl_config_free(back);
    }
}

/* A value for row k unlike its default, valid for its type: the far end of its range, a
 * third of the way into a float range (17 significant digits), the other bool, the last
 * choice, a string with everything that needs escaping. */
static void non_default_arg(const struct ssl_key_spec *k, char *arg, size_t n)
{
    const double lo = k->min, hi = k->max;
    switch (k->type) {
    case SSL_KEY_INT: snprintf(arg, n, "%s=%.0f", k->key, hi); break;
    case SSL_KEY_FLOAT: snprintf(arg, n, "%s=%.17g", k->key, lo + (hi - lo) / 3); break;
    case SSL_KEY_BOOL:
        snprintf(arg, n, "%s=%s", k->key, strcmp(k->def, "true") == 0 ? "false" : "true");
        break;
    case SSL_KEY_STRING:
        snprintf(arg, n, "%s=q\"b\\s\nnl\ttab\x01 # c: d \xc3\xbc \xe2\x80\xa8 \xc2\x85 \xef\xbb\xbf "
                         "\xf0\x9f\x98\x80 '", k->key);
        break;
    case SSL_KEY_ENUM: snprintf(arg, n, "%s=%s", k->key, strrchr(k->choices, '|') + 1); break;
    case SSL_KEY_INT_LIST: snprintf(arg, n, "%s=%.0f,%.0f,%.0f", k->key, lo, hi, lo); break;
    case SSL_KEY_FLOAT_LIST:
        snprintf(arg, n, "%s=%.17g,%.17g", k->key, lo + (hi - lo) / 3, lo + (hi - lo) / 7);
        break;
    }
}

/* FLOAT_LIST: one value for every index, one per index with the last repeating, from YAML
 * sequences and command-line text; empty lists and bad elements are errors with the key. */
static void test_float_lists(void **state)
{
    (void)state;
    const char *key = NULL;
    for (int i = 0; i < ssl_config_n_keys && key == NULL; i++)
        if (ssl_config_keys[i].type == SSL_KEY_FLOAT_LIST) key = ssl_config_keys[i].key;
    if (key == NULL) skip();
    struct ssl_config *cfg = fresh();
    struct ssl_error err = {0};
    char arg[256];
    snprintf(arg, sizeof arg, "%s=0.5", key);
    assert_int_equal(ssl_config_set_arg(cfg, arg, &err), SSL_OK);
    assert_true(ssl_config_float_at(cfg, key, 0) == 0.5 && ssl_config_float_at(cfg, key, 7) == 0.5);
    snprintf(arg, sizeof arg, "%s=[0.25, 0.75]", key);
    assert_int_equal(ssl_config_set_arg(cfg, arg, &err), SSL_OK);
    assert_int_equal(ssl_config_list_length(cfg, key), 2);
    assert_true(ssl_config_float_at(cfg, key, 0) == 0.25 && ssl_config_float_at(cfg, key, 1) == 0.75);
    assert_true(ssl_config_float_at(cfg, key, 5) == 0.75);
    snprintf(arg, sizeof arg, "%s=[]", key);
    assert_int_equal(ssl_config_set_arg(cfg, arg, &err), SSL_E_USAGE);
    assert_non_null(strstr(err.msg, key));
    struct ssl_error err2 = {0};
    snprintf(arg, sizeof arg, "%s=0.5,x", key);
    assert_int_equal(ssl_config_set_arg(cfg, arg, &err2), SSL_E_USAGE);
    assert_non_null(strstr(err2.msg, key));
    ssl_config_free(cfg);
}

static void test_round_trip_defaults(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    assert_round_trip(cfg);
    ssl_config_free(cfg);
}

static void test_round_trip_every_key(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    char arg[256];
    for (int i = 0; i < ssl_config_n_keys; i++) {
        non_default_arg(&ssl_config_keys[i], arg, sizeof arg);
        set_ok(cfg, arg);
    }
    assert_round_trip(cfg);
    set_ok(cfg, "optim.momentum=-0"); /* the sign of zero survives */
    set_ok(cfg, "optim.lr=0.1");
    set_ok(cfg, "model.bn.eps=4.9406564584124654e-324");
    set_ok(cfg, "run.seed=0");
    assert_round_trip(cfg);
    ssl_config_free(cfg);
}

static void test_serialized_form(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    set_ok(cfg, "run.name=x");
    char *text = ssl_config_serialize(cfg, false);
    assert_contains(text, "run:\n  seed: 0\n  threads: 0\n  name: \"x\"\n  dir: \"runs\"\n"
                          "  resume: \"auto\"\nmodel:\n");
    assert_contains(text, "\n  mlp:\n    hidden: [512, 512]\n  bn:\n    eps: 1.0e-05\n");
    assert_contains(text, "\n  predictor:\n    hidden: []\n    out: 0\n");
    assert_contains(text, "\n  lr: 0.05\n");
    assert_contains(text, "\n  final_lr: 0.0\n");
    assert_contains(text, "\n  predictor_lr: -1.0\n");
    assert_contains(text, "\n  lars:\n    eta: 0.02\n    clip: false\n");
    assert_non_null(strstr(text, "optim:\n"));
    assert_null(strstr(strstr(text, "optim:\n") + 1, "optim:\n")); /* each group once */
    free(text);
    ssl_config_free(cfg);
}

static void test_parse_serialized_merges_and_names_origin(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    struct ssl_error err = {0};
    assert_int_equal(ssl_config_parse_serialized(cfg, "optim:\n  lr: 0.25\n", "ckpt.h5", &err), SSL_OK);
    assert_true(ssl_config_float(cfg, "optim.lr") == 0.25);
    assert_true(ssl_config_float(cfg, "optim.momentum") == 0.9);
    char *text = ssl_config_serialize(cfg, true);
    assert_contains(text, "  lr: 0.25  # from ckpt.h5:2\n");
    free(text);
    assert_int_equal(ssl_config_parse_serialized(cfg, "optim:\n  xyzzy: 1\n", "ckpt.h5", &err), SSL_E_USAGE);
    assert_string_equal(err.msg, "ckpt.h5:2: unknown key 'optim.xyzzy' (`ssltrain help config` lists them)");
    ssl_config_free(cfg);
}

/* ---- the table ---- */

static bool name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; }

/* Dotted lower-case names, no empty component. */
static void assert_key_syntax(const char *key)
{
    bool ok = name_char(key[0]);
    for (const char *c = key; ok && *c; c++)
        ok = name_char(*c) || (*c == '.' && name_char(c[1]) && c > key);
    if (!ok) fail_msg("bad key name '%s'", key);
}

static void assert_choices(const struct ssl_key_spec *k)
{
    if (k->type != SSL_KEY_ENUM) {
        if (k->choices) fail_msg("%s: choices on a non-enum", k->key);
        return;
    }
    assert_non_null(k->choices);
    char buf[512], *choice[32];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", k->choices);
    for (char *c = buf, *bar; n < 32; c = bar + 1) {
        choice[n++] = c;
        if ((bar = strchr(c, '|')) == NULL) break;
        *bar = '\0';
    }
    for (int i = 0; i < n; i++) {
        bool ok = choice[i][0] != '\0';
        for (const char *c = choice[i]; ok && *c; c++) ok = name_char(*c);
        if (!ok) fail_msg("%s: bad choice '%s' in '%s'", k->key, choice[i], k->choices);
        for (int j = 0; j < i; j++)
            if (strcmp(choice[i], choice[j]) == 0) fail_msg("%s: choice '%s' twice", k->key, choice[i]);
    }
}

static void assert_range(const struct ssl_key_spec *k)
{
    if (k->type != SSL_KEY_INT && k->type != SSL_KEY_FLOAT && k->type != SSL_KEY_INT_LIST &&
        k->type != SSL_KEY_FLOAT_LIST)
        return;
    if (!(k->min <= k->max) || !isfinite(k->min) || !isfinite(k->max))
        fail_msg("%s: bad range [%g, %g]", k->key, k->min, k->max);
    bool integral = floor(k->min) == k->min && floor(k->max) == k->max;
    if (k->type != SSL_KEY_FLOAT && k->type != SSL_KEY_FLOAT_LIST && (!integral || fabs(k->min) > 0x1p53 || fabs(k->max) > 0x1p53))
        fail_msg("%s: integer bounds must be integers within 2^53", k->key);
}

static void test_table_is_sane(void **state)
{
    (void)state;
    assert_true(ssl_config_n_keys > 0);
    struct ssl_config *defaults = fresh(), *cfg = fresh();
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        assert_non_null(k->key);
        assert_key_syntax(k->key);
        for (int j = 0; j < ssl_config_n_keys; j++) {
            const char *o = ssl_config_keys[j].key;
            size_t n = strlen(k->key);
            if (j != i && strcmp(o, k->key) == 0) fail_msg("%s declared twice", k->key);
            if (strncmp(o, k->key, n) == 0 && o[n] == '.') fail_msg("%s is also the group of %s", k->key, o);
        }
        assert_true(k->type >= SSL_KEY_INT && k->type <= SSL_KEY_FLOAT_LIST);
        if (k->help == NULL || k->help[0] == '\0' || strchr(k->help, '\n') || strlen(k->help) > 90)
            fail_msg("%s: help must be one short line", k->key);
        assert_non_null(k->def);
        assert_choices(k);
        assert_range(k);
        /* The default, given as an override, parses, is in range and is what create() holds. */
        char arg[512];
        snprintf(arg, sizeof arg, "%s=%s", k->key, k->def);
        set_ok(cfg, arg);
    }
    assert_same_values(defaults, cfg);
    ssl_config_free(defaults);
    ssl_config_free(cfg);
}

static void test_print_table(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    ssl_config_print_table(f);
    assert_int_equal(fclose(f), 0);
    assert_true(strncmp(text, "key ", 4) == 0);
    for (int i = 0; i < ssl_config_n_keys; i++) {
        char want[128];
        snprintf(want, sizeof want, "\n%s ", ssl_config_keys[i].key);
        const char *at = strstr(text, want);
        if (at == NULL || strstr(at + 1, want))
            fail_msg("%s not listed once:\n%s", ssl_config_keys[i].key, text);
        assert_non_null(strstr(at, ssl_config_keys[i].help));
    }
    assert_contains(text, "(0, 1]");
    assert_contains(text, "[0, 1)");
    assert_contains(text, "convnet|resnet18|mlp");
    assert_contains(text, "[1, 1048576] each");
    /* Columns line up: every key row has its type at the same column as the header. */
    ptrdiff_t type_col = strstr(text, "type") - text;
    const char *row = strstr(text, "\noptim.lr ") + 1;
    assert_true(strncmp(row + type_col, "float ", 6) == 0);
    free(text);
}

/* ---- programming errors abort ---- */

enum getter_misuse { MISUSE_UNKNOWN_KEY, MISUSE_WRONG_TYPE, MISUSE_STR_OF_INT, MISUSE_LIST_BUFFER };

static void misuse(const struct ssl_config *cfg, enum getter_misuse m)
{
    switch (m) {
    case MISUSE_UNKNOWN_KEY: (void)ssl_config_int(cfg, "optim.lrr"); break;
    case MISUSE_WRONG_TYPE: (void)ssl_config_int(cfg, "optim.lr"); break;
    case MISUSE_STR_OF_INT: (void)ssl_config_str(cfg, "data.batch"); break;
    case MISUSE_LIST_BUFFER: (void)ssl_config_int_list(cfg, "model.mlp.hidden", NULL, 2); break;
    }
}

static void test_getter_misuse_aborts(void **state)
{
    (void)state;
    struct ssl_config *cfg = fresh();
    for (int m = MISUSE_UNKNOWN_KEY; m <= MISUSE_LIST_BUFFER; m++) {
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            if (freopen("/dev/null", "w", stderr) == NULL) _exit(3);
            misuse(cfg, (enum getter_misuse)m);
            _exit(0);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT) fail_msg("misuse %d did not abort", m);
    }
    ssl_config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_nested_yaml_flattens),
        cmocka_unit_test(test_overrides_beat_the_file),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_cannot_be_read),
        cmocka_unit_test(test_empty_file_sets_nothing),
        cmocka_unit_test(test_command_line_errors),
        cmocka_unit_test(test_int_range),
        cmocka_unit_test(test_float_range),
        cmocka_unit_test(test_enum_choices),
        cmocka_unit_test(test_bool_spellings),
        cmocka_unit_test(test_int_lists),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_plain_scalar_with_colon_is_an_error),
        cmocka_unit_test(test_float_lists),
        cmocka_unit_test(test_round_trip_defaults),
        cmocka_unit_test(test_round_trip_every_key),
        cmocka_unit_test(test_serialized_form),
        cmocka_unit_test(test_parse_serialized_merges_and_names_origin),
        cmocka_unit_test(test_table_is_sane),
        cmocka_unit_test(test_print_table),
        cmocka_unit_test(test_getter_misuse_aborts),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
