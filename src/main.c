/* main.c: the ssltrain command line. Exit codes (docs/ARCHITECTURE.md): 0 finished, 1 other
 * error, 2 usage or config error, 3 bad input data, 4 non-finite loss, 85 checkpointed on a
 * signal (requeue). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "cmd_analyze.h"
#include "cmd_data.h"
#include "cmd_study.h"
#include "cmd_train.h"
#include "comm.h"
#include "config.h"
#include "log.h"
#include "loss_tool/loss_tool.h"
#include "model_config.h"
#include "models/model.h"
#include "trainer.h"
#include "version.h"

static const char *USAGE =
    "usage: ssltrain COMMAND [ARGS]\n"
    "\n"
    "Distributed self-supervised representation learning (run under mpirun/srun, or alone).\n"
    "\n"
    "commands:\n"
    "  train   JOB.yaml [key=value ...] [--dry-run|--check]   train (resumes its run directory)\n"
    "  eval    CKPT.h5 [key=value ...] [--json]   kNN and linear-probe accuracy, collapse metrics\n"
    "  dump    CKPT.h5 --out EMB.h5 [--split train|test] [key=value ...]   embeddings to HDF5\n"
    "  bench   [JOB.yaml] [key=value ...] [--data]  training-step (and augmentation) throughput\n"
    "  params  [JOB.yaml] [key=value ...]   the model's state_dict: name, shape, param|buffer\n"
    "  convert [JOB.yaml] [key=value ...] --out FILE.h5   pack data.dataset into the HDF5 format\n"
    "  augment [JOB.yaml] [key=value ...] --out FILE.png [--count N]   a grid of views\n"
    "  analyze EMB.h5 [--dataset /z] [--json] [--plot spectrum.png]   collapse metrics\n"
    "  loss    IN.h5 --out OUT.h5 [--losses simclr,vicreg,...] [key=value ...]   losses and\n"
    "          gradients in fp64 on an HDF5 dump\n"
    "  study   NAME [--out DIR] [--quick] [--seed N] [--lu-rows N]   W2 and L_U on the W2\n"
    "          paper's synthetic data (distribution, collapse, dimension, feature-cloning,\n"
    "          feature-baby, instance-cloning, large-mean)\n"
    "  help config                         every config key: type, default, range, help\n"
    "  --version                           revision and MPI, BLAS, HDF5 versions\n"
    "  --help                              this text; COMMAND --help for one command\n"
    "\n"
    "Configuration: a YAML job file flattened to dotted keys (optim.lr), then key=value\n"
    "overrides in order. Exit codes: 0 ok, 1 other error, 2 usage/config error, 3 bad input\n"
    "data, 4 non-finite loss, 85 checkpointed on a signal (requeue).\n";

static const char *TRAIN_HELP =
    "usage: ssltrain train [JOB.yaml] [key=value ...] [--dry-run | --check]\n"
    "\n"
    "Trains method.name on data.dataset under mpirun/srun (or alone). The run directory\n"
    "run.dir/run.name (default: the job file's name) holds config.yaml, metrics.jsonl and\n"
    "checkpoints/; it is locked while the run writes to it, and a second `train` on it resumes\n"
    "from the newest valid checkpoint (run.resume=never starts afresh elsewhere). SIGUSR1,\n"
    "SIGTERM and SIGINT checkpoint after the current step and exit 85 with a REQUEUE marker.\n"
    "--dry-run  checks the config, data and model, prints the plan (steps, per-rank batch,\n"
    "           memory per rank) and exits. docs/TRAINING.md has the details.\n"
    "--check    checks the config without the data: keys, method against model and views,\n"
    "           the model for the per-rank batch (for job catalogues; no dataset needed).\n";

static const char *EVAL_HELP =
    "usage: ssltrain eval CKPT.h5 [key=value ...] [--json]\n"
    "\n"
    "Evaluates a checkpoint's backbone on the config stored in it (overrides apply on top, e.g.\n"
    "data.path): weighted kNN (k = 20, T = 0.07, cosine, as solo-learn) and a linear probe on\n"
    "standardised frozen features of the whole training split, Acc@1 and Acc@5 on the test\n"
    "split; and W2, uniformity, alignment, effective rank, z_std on a held-out batch.\n";

static const char *DUMP_HELP =
    "usage: ssltrain dump CKPT.h5 --out EMB.h5 [--split train|test] [key=value ...]\n"
    "\n"
    "Writes a split's embeddings (default test): /h backbone features, /z projector outputs,\n"
    "/labels, /index, with attributes method, step, epoch, split, config, git_revision. Every\n"
    "rank writes its rows collectively. `ssltrain analyze EMB.h5` reads it.\n";

static const char *BENCH_HELP =
    "usage: ssltrain bench [JOB.yaml] [key=value ...]\n"
    "\n"
    "Times the full training step (two views: forward, loss, backward, optimizer step) on\n"
    "synthetic N(0,1) images and prints images/s (pairs of views per second). Keys that matter:\n"
    "model.* (backbone, projector widths), data.batch (global; divided over the ranks),\n"
    "run.threads (BLAS threads per rank), bench.loss, bench.steps, bench.warmup, optim.*.\n"
    "Last line: ssltrain bench: model=... batch=... threads=... step_s=... images_per_s=...\n"
    "\n"
    "--data  also measures augmentation: views per second on one core for synthetic images of\n"
    "        the model's input shape with the aug.* recipes, against the step's views per second\n"
    "        (2 per image pair). Line: ssltrain bench data: aug_views_per_s_per_core=...\n";

static const char *CONVERT_HELP =
    "usage: ssltrain convert [JOB.yaml] [key=value ...] --out FILE.h5\n"
    "\n"
    "Packs data.dataset (data.path; fashion_mnist, cifar10, cifar100 or hdf5) into ssltrain's\n"
    "HDF5 image format: /images uint8 (N, C, H, W), /labels int64 (N), /test/images and\n"
    "/test/labels, with attributes format, format_version, n_classes, layout, source. Use it\n"
    "with data.dataset=hdf5 data.path=FILE.h5. Written atomically (FILE.h5.tmp, then renamed).\n";

static const char *ANALYZE_HELP =
    "usage: ssltrain analyze EMB.h5 [--dataset /z] [--json] [--plot spectrum.png]\n"
    "\n"
    "Collapse metrics of an embedding dump: a 2-D float32 or float64 dataset (N, D), default /z:\n"
    "w2 (WassersteinSSL's metric), uniformity (Wang & Isola, t = 2), rank, rank_raw, rank_tol0.1,\n"
    "stable_rank, stable_rank_sv, effective_rank, effective_rank_cov, rankme, z_std_mean, and\n"
    "alignment when /z1 and /z2 are present (docs/LOSSES.md has the definitions). --json prints\n"
    "one JSON object with the eigenvalue spectrum too; --plot draws log eigenvalue against index.\n";

static const char *STUDY_HELP =
    "usage: ssltrain study NAME [--out DIR] [--quick] [--seed N] [--lu-rows N]\n"
    "\n"
    "Reproduces a synthetic study of the W2 paper's repository (statsle/WassersteinSSL) on\n"
    "generated data and compares W2 (WassersteinSSL's metric) with L_U (Wang & Isola, t = 2).\n"
    "NAME: " SSL_STUDY_NAMES "\n"
    "(docs/LOSSES.md \"ssltrain study\" says what each generates and from which script).\n"
    "Prints a Markdown table and writes DIR/NAME.csv, DIR/NAME.md and DIR/NAME.png (W2 and L_U\n"
    "against the study's parameter). DIR defaults to the current directory and is created.\n"
    "\n"
    "--quick      small sizes (every study in seconds); default: the scripts' sizes\n"
    "--seed N     key of the random streams (default 0)\n"
    "--lu-rows N  L_U, which costs O(N^2 D), on the first N rows only; 0 = all rows; default\n"
    "             all with --quick, else 5000 (instance-cloning and large-mean: always all)\n";

static const char *LOSS_HELP = SSL_LOSS_TOOL_HELP;

static const char *AUGMENT_HELP =
    "usage: ssltrain augment [JOB.yaml] [key=value ...] --out FILE.png [--count N]\n"
    "\n"
    "Writes a PNG grid: one row per sample (N, default 8, the first samples of epoch 0), the\n"
    "original image then its aug.views views as training would see them (before\n"
    "normalisation), so a recipe can be checked before spending cluster hours on it.\n";

static const char *PARAMS_HELP =
    "usage: ssltrain params [JOB.yaml] [key=value ...]\n"
    "\n"
    "Prints the model's state_dict entries in PyTorch order, one per line:\n"
    "name<TAB>d0,d1,...<TAB>param|buffer  (a 0-dim entry has an empty shape), then a total.\n";

/* The command's own options, taken out of the arguments; the rest is the config. */
struct cli_options {
    bool help, data, json, dry_run, check;
    const char *out, *dataset, *plot, *split;
    int64_t count;
};

static enum ssl_status take_options(struct cli_options *o, int *argc, char **argv, struct ssl_error *err)
{
    int kept = 0;
    *o = (struct cli_options){.count = 8, .dataset = "/z"};
    for (int i = 0; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) o->help = true;
        else if (strcmp(a, "--data") == 0) o->data = true;
        else if (strcmp(a, "--json") == 0) o->json = true;
        else if (strcmp(a, "--dry-run") == 0) o->dry_run = true;
        else if (strcmp(a, "--check") == 0) o->check = true;
        else if ((strcmp(a, "--out") == 0 || strcmp(a, "--count") == 0 || strcmp(a, "--dataset") == 0 ||
                  strcmp(a, "--plot") == 0 || strcmp(a, "--split") == 0) && i + 1 >= *argc)
            return ssl_error_set(err, SSL_E_USAGE, "%s needs a value", a);
        else if (strcmp(a, "--out") == 0) o->out = argv[++i];
        else if (strcmp(a, "--dataset") == 0) o->dataset = argv[++i];
        else if (strcmp(a, "--plot") == 0) o->plot = argv[++i];
        else if (strcmp(a, "--split") == 0) o->split = argv[++i];
        else if (strcmp(a, "--count") == 0) {
            char *end = NULL;
            o->count = strtoll(argv[++i], &end, 10);
            if (*end || o->count < 1 || o->count > 256)
                return ssl_error_set(err, SSL_E_USAGE, "--count: '%s' is not a number in [1, 256]", argv[i]);
        } else if (strncmp(a, "--", 2) == 0) return ssl_error_set(err, SSL_E_USAGE, "unknown option '%s'", a);
        else argv[kept++] = argv[i];
    }
    *argc = kept;
    return SSL_OK;
}

/* Rank 0 parses the job file and overrides; the resolved text is broadcast so every rank
 * holds the identical config. Collective. */
static enum ssl_status load_config(const struct ssl_comm *comm, int argc, char **argv,
                                   struct ssl_config **cfg, struct ssl_error *err)
{
    enum ssl_status rc = ssl_config_create(cfg, err);
    if (rc) return rc;
    long long n_text = 0;
    char *text = NULL;
    if (comm->rank == 0) {
        for (int i = 0; i < argc && !rc; i++) {
            if (strchr(argv[i], '=')) rc = ssl_config_set_arg(*cfg, argv[i], err);
            else if (i == 0) rc = ssl_config_load_file(*cfg, argv[i], err);
            else rc = ssl_error_set(err, SSL_E_USAGE, "unexpected argument '%s' (expected key=value)", argv[i]);
        }
        if (!rc) {
            text = ssl_config_serialize(*cfg, false);
            n_text = (long long)strlen(text) + 1;
        }
    }
    int status = (int)rc;
    MPI_Bcast(&status, 1, MPI_INT, 0, comm->world);
    if (status) return status == (int)rc ? rc : ssl_error_set(err, (enum ssl_status)status, "rank 0 could not read the configuration");
    MPI_Bcast(&n_text, 1, MPI_LONG_LONG, 0, comm->world);
    if (comm->rank != 0) text = malloc((size_t)n_text);
    SSL_CHECK(text != NULL);
    MPI_Bcast(text, (int)n_text, MPI_CHAR, 0, comm->world);
    if (comm->rank != 0) rc = ssl_config_parse_serialized(*cfg, text, "rank 0", err);
    free(text);
    return rc;
}

static enum ssl_status cmd_params(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                  struct ssl_error *err)
{
    struct ssl_model_cfg mc;
    struct ssl_model m;
    enum ssl_status rc = ssl_model_cfg_from_config(&mc, cfg, err);
    if (!rc) rc = ssl_model_build(&m, &mc, 2, 1, err);
    if (rc) return rc;
    for (int i = 0; i < m.params.n_items && comm->rank == 0; i++) {
        const struct ssl_param *e = &m.params.items[i];
        printf("%s\t", e->name);
        for (int d = 0; d < e->shape.n_dims; d++) printf(d ? ",%lld" : "%lld", (long long)e->shape.dim[d]);
        printf("\t%s\n", ssl_param_trainable(e->kind) ? "param" : "buffer");
    }
    if (comm->rank == 0)
        printf("# %lld trainable parameters, %lld buffer elements\n", (long long)m.params.n_params,
               (long long)(m.params.n_buffers + m.params.n_counters));
    ssl_model_free(&m);
    return SSL_OK;
}

static enum ssl_status run_bench(const struct ssl_config *cfg, const struct ssl_comm *comm,
                                 const struct cli_options *o, const struct ssl_logger *lg,
                                 struct ssl_error *err)
{
    double step_pairs = 0, aug = 0;
    enum ssl_status rc = ssl_bench_run(cfg, comm, lg, &step_pairs, err);
    if (rc || !o->data) return rc;
    rc = ssl_bench_augment(cfg, &aug, err);
    if (!rc)
        ssl_log(lg, SSL_LOG_INFO,
                "ssltrain bench data: model=%s image=%lldx%lldx%lld views=%lld aug_views_per_s_per_core=%.0f "
                "step_views_per_s=%.0f ratio=%.1f",
                ssl_config_str(cfg, "model.backbone"), (long long)ssl_config_int(cfg, "model.in_channels"),
                (long long)ssl_config_int(cfg, "model.image_size"),
                (long long)ssl_config_int(cfg, "model.image_size"), (long long)ssl_config_int(cfg, "aug.views"),
                aug, 2 * step_pairs, aug / (2 * step_pairs));
    return rc;
}

static enum ssl_status dispatch(const char *cmd, const struct ssl_config *cfg, const struct ssl_comm *comm,
                                const struct cli_options *o, const struct ssl_logger *lg,
                                struct ssl_error *err)
{
    bool needs_out = strcmp(cmd, "convert") == 0 || strcmp(cmd, "augment") == 0;
    if (needs_out && o->out == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s needs --out FILE", cmd);
    if (strcmp(cmd, "bench") == 0) return run_bench(cfg, comm, o, lg, err);
    if (strcmp(cmd, "convert") == 0) return ssl_cmd_convert(cfg, comm, o->out, lg, err);
    if (strcmp(cmd, "augment") == 0) return ssl_cmd_augment(cfg, comm, o->out, o->count, lg, err);
    return cmd_params(cfg, comm, err);
}

/* analyze reads a file, not a job config: rank 0 works, the others wait for its verdict. */
static int run_analyze(const struct ssl_comm *comm, const struct cli_options *o, int n_args, char **args,
                       const struct ssl_logger *lg)
{
    struct ssl_error err = {0};
    int rc = 0;
    if (comm->rank == 0) {
        if (n_args != 1) rc = ssl_error_set(&err, SSL_E_USAGE, "analyze takes one HDF5 file (got %d arguments)", n_args);
        struct ssl_analyze_args a = {.path = n_args ? args[0] : "", .dataset = o->dataset, .json = o->json, .plot = o->plot};
        if (!rc) rc = ssl_cmd_analyze(&a, &err);
        if (rc) ssl_log(lg, SSL_LOG_ERROR, "%s", err.msg);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm->world);
    return rc;
}

static enum ssl_status parse_count(const char *opt, const char *text, int64_t *v, struct ssl_error *err)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(text, &end, 10);
    if (errno || end == text || *end || x < 0)
        return ssl_error_set(err, SSL_E_USAGE, "%s: '%s' is not a non-negative integer", opt, text);
    *v = (int64_t)x;
    return SSL_OK;
}

/* study generates its data, no job config: its own options; rank 0 works, the others wait for
 * its verdict. */
static int run_study(const struct ssl_comm *comm, int n_args, char **args, const struct ssl_logger *lg)
{
    struct ssl_error err = {0};
    struct ssl_study_args a = {.study = NULL, .out_dir = ".", .lu_rows = -1};
    int rc = 0;
    int64_t seed = 0;
    for (int i = 0; !rc && i < n_args; i++) {
        const char *o = args[i];
        bool valued = strcmp(o, "--out") == 0 || strcmp(o, "--seed") == 0 || strcmp(o, "--lu-rows") == 0;
        if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
            if (comm->rank == 0) fputs(STUDY_HELP, stdout);
            return 0;
        } else if (valued && i + 1 >= n_args) rc = ssl_error_set(&err, SSL_E_USAGE, "%s needs a value", o);
        else if (strcmp(o, "--quick") == 0) a.quick = true;
        else if (strcmp(o, "--out") == 0) a.out_dir = args[++i];
        else if (strcmp(o, "--seed") == 0) rc = parse_count(o, args[++i], &seed, &err);
        else if (strcmp(o, "--lu-rows") == 0) rc = parse_count(o, args[++i], &a.lu_rows, &err);
        else if (strncmp(o, "--", 2) == 0) rc = ssl_error_set(&err, SSL_E_USAGE, "unknown option '%s'", o);
        else if (a.study != NULL) rc = ssl_error_set(&err, SSL_E_USAGE, "study takes one NAME (got '%s' and '%s')", a.study, o);
        else a.study = o;
    }
    if (!rc && a.study == NULL)
        rc = ssl_error_set(&err, SSL_E_USAGE, "study needs a NAME: %s", SSL_STUDY_NAMES);
    a.seed = (uint64_t)seed;
    if (comm->rank == 0) {
        if (!rc) rc = ssl_cmd_study(&a, &err);
        if (rc) ssl_log(lg, SSL_LOG_ERROR, "%s", err.msg);
    }
    MPI_Bcast(&rc, 1, MPI_INT, 0, comm->world);
    return rc;
}

/* eval and dump take a checkpoint, whose stored config the overrides modify. */
static int run_checkpoint_cmd(const char *cmd, const struct ssl_comm *comm,
                              const struct cli_options *o, int n_args, char **args,
                              const struct ssl_logger *lg)
{
    struct ssl_error err = {0};
    enum ssl_status rc = SSL_OK;
    if (n_args < 1 || strchr(args[0], '=') != NULL)
        rc = ssl_error_set(&err, SSL_E_USAGE, "%s needs a checkpoint file CKPT.h5 first", cmd);
    else if (strcmp(cmd, "eval") == 0)
        rc = ssl_cmd_eval(args[0], n_args - 1, args + 1, o->json, comm, lg, &err);
    else
        rc = ssl_cmd_dump(args[0], o->out, o->split, n_args - 1, args + 1, comm, lg, &err);
    if (rc && err.msg[0]) ssl_log(lg, SSL_LOG_ERROR, "%s", err.msg);
    return (int)rc;
}

static int run(const struct ssl_comm *comm, int argc, char **argv)
{
    struct ssl_logger lg;
    ssl_logger_init(&lg, comm->rank, comm->size);
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0) {
        if (argc >= 3 && strcmp(argv[2], "config") == 0) {
            if (comm->rank == 0) ssl_config_print_table(stdout);
            return 0;
        }
        if (comm->rank == 0) fputs(USAGE, stdout);
        return 0;
    }
    const char *help = strcmp(cmd, "train") == 0     ? TRAIN_HELP
                       : strcmp(cmd, "eval") == 0    ? EVAL_HELP
                       : strcmp(cmd, "dump") == 0    ? DUMP_HELP
                       : strcmp(cmd, "bench") == 0   ? BENCH_HELP
                       : strcmp(cmd, "params") == 0  ? PARAMS_HELP
                       : strcmp(cmd, "convert") == 0 ? CONVERT_HELP
                       : strcmp(cmd, "augment") == 0 ? AUGMENT_HELP
                       : strcmp(cmd, "analyze") == 0 ? ANALYZE_HELP
                       : strcmp(cmd, "study") == 0   ? STUDY_HELP
                                                     : NULL;
    if (help == NULL) {
        if (comm->rank == 0) fprintf(stderr, "ssltrain: unknown command '%s' (try ssltrain --help)\n", cmd);
        return SSL_E_USAGE;
    }
    if (strcmp(cmd, "study") == 0) return run_study(comm, argc - 2, argv + 2, &lg);
    struct ssl_error err = {0};
    struct cli_options o;
    int n_args = argc - 2;
    enum ssl_status rc = take_options(&o, &n_args, argv + 2, &err);
    if (!rc && o.help) {
        if (comm->rank == 0) fputs(help, stdout);
        return 0;
    }
    if (!rc && strcmp(cmd, "analyze") == 0) return run_analyze(comm, &o, n_args, argv + 2, &lg);
    if (!rc && (strcmp(cmd, "eval") == 0 || strcmp(cmd, "dump") == 0))
        return run_checkpoint_cmd(cmd, comm, &o, n_args, argv + 2, &lg);
    struct ssl_config *cfg = NULL;
    if (!rc) rc = load_config(comm, n_args, argv + 2, &cfg, &err);
    const char *job = n_args > 0 && strchr(argv[2], '=') == NULL ? argv[2] : NULL;
    if (!rc && strcmp(cmd, "train") == 0)
        rc = o.check ? ssl_train_check(cfg, comm, &lg, &err)
                     : ssl_train_run(cfg, job, o.dry_run, comm, &lg, &err);
    else if (!rc) rc = dispatch(cmd, cfg, comm, &o, &lg, &err);
    if (rc && err.msg[0]) ssl_log(&lg, SSL_LOG_ERROR, "%s", err.msg);
    ssl_config_free(cfg);
    return (int)rc;
}

/* `ssltrain loss`: execs ssltrain-loss from the directory of this executable, before MPI is
 * initialised (the tool is one process and links the fp64 build of the losses). Returns only
 * on failure. */
static int exec_loss_tool(int argc, char **argv)
{
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(LOSS_HELP, stdout);
            return 0;
        }
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len < 0 || (size_t)len >= sizeof self - 1) {
        fprintf(stderr, "ssltrain: loss: cannot find this executable's path (/proc/self/exe)\n");
        return SSL_E_OTHER;
    }
    self[len] = '\0';
    char *slash = strrchr(self, '/');
    size_t dir_len = slash ? (size_t)(slash - self) : 0;
    char tool[4096 + sizeof SSL_LOSS_TOOL_EXE];
    snprintf(tool, sizeof tool, "%.*s/%s", (int)dir_len, self, SSL_LOSS_TOOL_EXE);
    /* argv[argc] is NULL: the tool gets (tool, ARGS...) */
    argv[1] = tool;
    execv(tool, argv + 1);
    fprintf(stderr, "ssltrain: loss: cannot run %s: %s (it is installed next to ssltrain)\n", tool,
            strerror(errno));
    return SSL_E_OTHER;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "loss") == 0) return exec_loss_tool(argc, argv);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? SSL_E_USAGE : 0;
    }
    struct ssl_comm comm;
    if (ssl_comm_init(&comm, &argc, &argv) != 0) {
        fprintf(stderr, "ssltrain: MPI_Init failed\n");
        return SSL_E_OTHER;
    }
    int rc;
    if (strcmp(argv[1], "--version") == 0) {
        if (comm.rank == 0) ssl_version_print(stdout);
        rc = 0;
    } else {
        rc = run(&comm, argc, argv);
    }
    ssl_comm_finalize(&comm);
    return rc;
}
