/* main.c: the ssltrain command line. Exit codes (docs/ARCHITECTURE.md): 0 finished, 1 other
 * error, 2 usage or config error, 3 bad input data, 4 non-finite loss, 85 checkpointed on a
 * signal (requeue). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "comm.h"
#include "config.h"
#include "log.h"
#include "model_config.h"
#include "models/model.h"
#include "version.h"

static const char *USAGE =
    "usage: ssltrain COMMAND [ARGS]\n"
    "\n"
    "Distributed self-supervised representation learning (run under mpirun/srun, or alone).\n"
    "\n"
    "commands:\n"
    "  bench  [JOB.yaml] [key=value ...]   training-step throughput (images/s) on synthetic data\n"
    "  params [JOB.yaml] [key=value ...]   the model's state_dict: name, shape, param|buffer\n"
    "  help config                         every config key: type, default, range, help\n"
    "  --version                           revision and MPI, BLAS, HDF5 versions\n"
    "  --help                              this text; COMMAND --help for one command\n"
    "\n"
    "Configuration: a YAML job file flattened to dotted keys (optim.lr), then key=value\n"
    "overrides in order. Exit codes: 0 ok, 1 other error, 2 usage/config error, 3 bad input\n"
    "data, 4 non-finite loss, 85 checkpointed on a signal (requeue).\n";

static const char *BENCH_HELP =
    "usage: ssltrain bench [JOB.yaml] [key=value ...]\n"
    "\n"
    "Times the full training step (two views: forward, loss, backward, optimizer step) on\n"
    "synthetic N(0,1) images and prints images/s (pairs of views per second). Keys that matter:\n"
    "model.* (backbone, projector widths), data.batch (global; divided over the ranks),\n"
    "run.threads (BLAS threads per rank), bench.loss, bench.steps, bench.warmup, optim.*.\n"
    "Last line: ssltrain bench: model=... batch=... threads=... step_s=... images_per_s=...\n";

static const char *PARAMS_HELP =
    "usage: ssltrain params [JOB.yaml] [key=value ...]\n"
    "\n"
    "Prints the model's state_dict entries in PyTorch order, one per line:\n"
    "name<TAB>d0,d1,...<TAB>param|buffer  (a 0-dim entry has an empty shape), then a total.\n";

static bool wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
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
    const char *help = strcmp(cmd, "bench") == 0 ? BENCH_HELP : strcmp(cmd, "params") == 0 ? PARAMS_HELP : NULL;
    if (help == NULL) {
        if (comm->rank == 0) fprintf(stderr, "ssltrain: unknown command '%s' (try ssltrain --help)\n", cmd);
        return SSL_E_USAGE;
    }
    if (wants_help(argc - 2, argv + 2)) {
        if (comm->rank == 0) fputs(help, stdout);
        return 0;
    }
    struct ssl_error err = {0};
    struct ssl_config *cfg = NULL;
    enum ssl_status rc = load_config(comm, argc - 2, argv + 2, &cfg, &err);
    if (!rc) rc = strcmp(cmd, "bench") == 0 ? ssl_bench_run(cfg, comm, &lg, &err) : cmd_params(cfg, comm, &err);
    if (rc && err.msg[0]) ssl_log(&lg, SSL_LOG_ERROR, "%s", err.msg);
    ssl_config_free(cfg);
    return (int)rc;
}

int main(int argc, char **argv)
{
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
