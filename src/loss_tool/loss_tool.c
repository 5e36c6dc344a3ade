/* loss_tool.c: `ssltrain-loss`, the offline loss tool behind `ssltrain loss` (src/main.c execs
 * it before MPI starts, so the tool initialises MPI itself: under `mpiexec -n P ssltrain loss`
 * every process execs it, and alone it is an MPI singleton). Reads an HDF5 dump (/z1, /z2 and
 * optional /p1, /p2, /t1, /t2, /queue, /prototypes), computes the requested losses and their
 * gradients with the fp64 build of the losses (ssl_core_f64: ssl_real is double) and the MPI
 * loss comm (mpi/loss_comm.h), writes OUT.h5 (via OUT.h5.tmp, renamed) and prints a JSON
 * summary on stdout (rank 0). ctx = {comm, seed 0, step 0}: randomness inside losses uses
 * seed 0, step 0.
 *
 * Distribution: the N-row inputs (z, p, t) are split into P contiguous equal blocks, rank r
 * holding rows [r N/P, (r+1) N/P) (N must be divisible by P: a usage error otherwise); /queue
 * and /prototypes are replicated. Each rank reads and writes its own rows collectively
 * (MPI-IO driver). The losses are written for the global batch, so in the default global mode
 * the values are the one-process values on every rank; the gradient of a replicated input
 * (SwAV's prototypes) is summed over the ranks, as the trainer's gradient allreduce does. With
 * loss.per_rank=true the losses that have a per-rank mode (W-MSE, Shuffled-DBN, CW-RGP,
 * Zero-CL) report the mean of the ranks' values and the gradient of that mean (each rank's
 * gradient / P), the way PyTorch DDP averages.
 *
 * Invariants: every input matrix is (rows, d) row-major double with one d for all; a gradient
 * buffer has its input's local shape and starts at zero (the losses accumulate into it). Every
 * fallible step ends with an agreement (ssl_h5_agree), so every rank returns the same status
 * and rank 0 prints the one message. Exit codes are enum ssl_status: 2 usage, 3 bad input
 * file, 4 non-finite loss, 1 anything else. */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "comm.h"
#include "config.h"
#include "h5_matrix.h"
#include "h5_util.h"
#include "loss_comm.h"
#include "loss_tool.h"
#include "losses/contrastive.h"
#include "losses/predictive.h"
#include "losses/redundancy.h"
#include "losses/uniformity.h"
#include "losses/whitening.h"

#if !defined(SSL_F64)
#error "ssltrain-loss computes in fp64: build it against ssl_core_f64"
#endif

enum input { IN_Z1, IN_Z2, IN_P1, IN_P2, IN_T1, IN_T2, IN_QUEUE, IN_PROTO, IN_COUNT };
static const char *const INPUT_NAMES[IN_COUNT] = {"z1", "z2", "p1", "p2", "t1", "t2", "queue", "prototypes"};
#define BIT(i) (1u << (i))
#define ZZ (BIT(IN_Z1) | BIT(IN_Z2))
#define PT (BIT(IN_P1) | BIT(IN_P2) | BIT(IN_T1) | BIT(IN_T2))
#define PP (BIT(IN_P1) | BIT(IN_P2))
/* Every rank holds all rows of these (K rows, not the batch): a memory bank and the SwAV
 * prototypes. The others are per-row: row i of every one is image i of the batch. */
#define REPLICATED (BIT(IN_QUEUE) | BIT(IN_PROTO))

static bool is_replicated(int i)
{
    return (REPLICATED & BIT(i)) != 0;
}

/* The inputs read from the file: m[i] (rows[i], d), NULL when the dataset is absent. rows[i]
 * is this rank's block (n) for the per-row inputs, all K rows for the replicated ones. */
struct inputs {
    const char *path;
    double *m[IN_COUNT];
    int64_t rows[IN_COUNT];
    int64_t file_rows[IN_COUNT]; /* rows in the file */
    int64_t n, d;                /* this rank's rows of /z1, and its columns */
    int64_t n_global, row0;      /* N = /z1's rows, and this rank's first row r N/P */
};

/* One loss run: value, gradients g[i] (rows[i], d) for the bits of def->grads, and a note on
 * options the tool adjusted to the shapes. */
struct result {
    double value;
    double *g[IN_COUNT];
    char note[256];
};

struct job {
    const struct inputs *in;
    const struct ssl_config *cfg;
    const struct ssl_loss_ctx *ctx; /* the MPI loss comm, seed 0, step 0 */
    const struct ssl_comm *comm;
    bool per_rank;                  /* loss.per_rank */
};

typedef int (*loss_fn)(const struct job *j, struct result *r, struct ssl_error *err);

struct loss_def {
    const char *name;
    unsigned needs; /* input bits */
    unsigned grads; /* input bits that get a gradient */
    loss_fn run;
    bool has_per_rank; /* follows loss.per_rank (then averaged over the ranks) */
};

static void *xcalloc(int64_t n_elems, size_t elem_bytes)
{
    SSL_CHECK(n_elems >= 0);
    void *p = calloc(n_elems > 0 ? (size_t)n_elems : 1, elem_bytes);
    SSL_CHECKF(p != NULL, "out of memory (%lld elements)", (long long)n_elems);
    return p;
}

#define M(i) ((const ssl_real *)j->in->m[i])

/* ---- the losses ------------------------------------------------------------------------- */
/* Each runs on this rank's n rows with j->ctx: the losses reach the other ranks' rows through
 * it. Work sizes take the ctx too (they may depend on the global batch). */

static int run_simclr(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_simclr_opts o = ssl_simclr_defaults();
    o.temperature = ssl_config_float(j->cfg, "loss.simclr.temperature");
    double *work = xcalloc(ssl_simclr_nt_xent_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_simclr_nt_xent_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                                     j->ctx, work);
    free(work);
    return rc;
}

static int run_moco(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d, k = j->in->rows[IN_QUEUE];
    struct ssl_moco_opts o = ssl_moco_defaults();
    o.temperature = ssl_config_float(j->cfg, "loss.moco.temperature");
    double *work = xcalloc(ssl_moco_sym_work_elems(j->ctx, n, d, k, &o), sizeof(double));
    int rc = ssl_moco_sym_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), M(IN_T1),
                               M(IN_T2), j->in->m[IN_QUEUE], n, d, k, &o, j->ctx, work);
    free(work);
    return rc;
}

static int run_byol(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    double *work = xcalloc(ssl_byol_work_elems(j->ctx, n, d, NULL), sizeof(double));
    int rc = ssl_byol_loss(&r->value, r->g[IN_P1], r->g[IN_P2], M(IN_P1), M(IN_P2), M(IN_T1), M(IN_T2),
                           n, d, NULL, j->ctx, work);
    free(work);
    return rc;
}

static int run_simsiam(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    double *work = xcalloc(ssl_simsiam_work_elems(j->ctx, n, d, NULL), sizeof(double));
    int rc = ssl_simsiam_loss(&r->value, r->g[IN_P1], r->g[IN_P2], M(IN_P1), M(IN_P2), M(IN_T1),
                              M(IN_T2), n, d, NULL, j->ctx, work);
    free(work);
    return rc;
}

static int run_rdm(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    double *work = xcalloc(ssl_rdm_work_elems(j->ctx, n, d, NULL), sizeof(double));
    int rc = ssl_rdm_loss(&r->value, r->g[IN_P1], r->g[IN_P2], M(IN_P1), M(IN_P2), M(IN_T1), M(IN_T2),
                          n, d, NULL, j->ctx, work);
    free(work);
    return rc;
}

/* The two views are the two large crops: z = [z1; z2] (2n, d), this rank's rows of each crop
 * (the loss's crop-major layout). Prototypes are used as given; their gradient here is this
 * rank's part (run_losses sums it over the ranks). */
static int run_swav(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d, k = j->in->rows[IN_PROTO];
    struct ssl_swav_opts o = ssl_swav_defaults();
    o.temperature = ssl_config_float(j->cfg, "loss.swav.temperature");
    o.epsilon = ssl_config_float(j->cfg, "loss.swav.epsilon");
    o.sinkhorn_iterations = (int)ssl_config_int(j->cfg, "loss.swav.iterations");
    double *z = xcalloc(2 * n * d, sizeof(double));  /* (2n, d) */
    double *dz = xcalloc(2 * n * d, sizeof(double)); /* (2n, d) */
    memcpy(z, j->in->m[IN_Z1], (size_t)(n * d) * sizeof *z);
    memcpy(z + n * d, j->in->m[IN_Z2], (size_t)(n * d) * sizeof *z);
    double *work = xcalloc(ssl_swav_work_elems(j->ctx, n, d, k, 2, &o), sizeof(double));
    int rc = ssl_swav_loss(&r->value, NULL, dz, r->g[IN_PROTO], z, M(IN_PROTO), n, d, k, 2, &o, j->ctx,
                           work);
    for (int64_t i = 0; i < n * d; i++) {
        r->g[IN_Z1][i] += dz[i];
        r->g[IN_Z2][i] += dz[n * d + i];
    }
    free(work);
    free(dz);
    free(z);
    return rc;
}

static int run_barlow(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_barlow_opts o = ssl_barlow_defaults();
    o.lambd = ssl_config_float(j->cfg, "loss.barlow.lambda");
    double *work = xcalloc(ssl_barlow_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_barlow_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                             j->ctx, work);
    free(work);
    return rc;
}

static int run_vicreg(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_vicreg_opts o = ssl_vicreg_defaults();
    o.sim = ssl_config_float(j->cfg, "loss.vicreg.sim");
    o.std = ssl_config_float(j->cfg, "loss.vicreg.std");
    o.cov = ssl_config_float(j->cfg, "loss.vicreg.cov");
    double *work = xcalloc(ssl_vicreg_full_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_vicreg_full_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                                  j->ctx, work);
    free(work);
    return rc;
}

static int run_zerocl(const struct job *j, struct result *r, enum ssl_zerocl_mode mode)
{
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_zerocl_opts o = ssl_zerocl_defaults(mode);
    o.per_rank = j->per_rank;
    double *work = xcalloc(ssl_zerocl_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_zerocl_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                             j->ctx, work);
    free(work);
    return rc;
}

static int run_zero_fcl(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    return run_zerocl(j, r, SSL_ZEROCL_FCL);
}

static int run_zero_icl(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    return run_zerocl(j, r, SSL_ZEROCL_ICL);
}

/* The largest divisor of n that is <= cap (1 when cap < 1). */
static int64_t divisor_at_most(int64_t n, int64_t cap)
{
    for (int64_t k = cap < n ? cap : n; k > 1; k--)
        if (n % k == 0) return k;
    return 1;
}

/* The method's defaults fitted to the batch the loss whitens (n: the global N, or this rank's
 * rows in the per-rank mode): w_size (when it is not the whole batch) becomes the largest
 * divisor of n not above the default, and for channel whitening also not above the rank of a
 * group (d - 1 for one group); Shuffled-DBN's groups become the largest divisor of d not
 * above the default. Each change is written to note. */
static struct ssl_whitening_opts fit_whitening(struct ssl_whitening_opts o, int64_t n, int64_t d,
                                               char *note, size_t note_bytes)
{
    size_t used = 0;
    if (o.w_size > 0) {
        int64_t cap = o.w_size;
        if (o.axis == SSL_WLOSS_AXIS_CHANNEL) {
            int64_t groups = o.n_groups > 0 ? o.n_groups : 1;
            int64_t rank = groups == 1 ? d - 1 : d / groups;
            if (rank < cap) cap = rank;
        }
        int64_t w = divisor_at_most(n, cap);
        if (w != o.w_size)
            used += (size_t)snprintf(note + used, note_bytes - used, "w_size %lld -> %lld; ",
                                     (long long)o.w_size, (long long)w);
        o.w_size = w;
    }
    if (o.n_groups > 0 && d % o.n_groups != 0) {
        int64_t g = divisor_at_most(d, o.n_groups);
        if (used < note_bytes)
            used += (size_t)snprintf(note + used, note_bytes - used, "n_groups %lld -> %lld; ",
                                     (long long)o.n_groups, (long long)g);
        o.n_groups = g;
    }
    if (used >= 2 && used < note_bytes) note[used - 2] = '\0'; /* drop the last "; " */
    return o;
}

static int run_whitening(const struct job *j, struct result *r, struct ssl_whitening_opts o,
                         struct ssl_error *err)
{
    int64_t n = j->in->n, d = j->in->d;
    /* the global mode whitens sub-batches of the global batch, so w_size must divide N; the
     * per-rank mode sub-batches of each rank's rows */
    o.per_rank = j->per_rank;
    int64_t whitened = o.per_rank ? n : j->in->n_global;
    o = fit_whitening(o, whitened, d, r->note, sizeof r->note);
    enum ssl_status st = ssl_whitening_validate(&o, 2, whitened, d, err);
    if (st != SSL_OK) return (int)st;
    const ssl_real *z[2] = {M(IN_Z1), M(IN_Z2)};
    ssl_real *dz[2] = {r->g[IN_Z1], r->g[IN_Z2]};
    double *work = xcalloc(ssl_whitening_work_elems(j->ctx, n, d, &o, 2), sizeof(double));
    int rc = ssl_whitening_loss(&r->value, dz, z, 2, n, d, &o, j->ctx, work, err);
    free(work);
    return rc;
}

static int run_wmse(const struct job *j, struct result *r, struct ssl_error *err)
{
    return run_whitening(j, r, ssl_wmse_defaults(), err);
}

static int run_sdbn(const struct job *j, struct result *r, struct ssl_error *err)
{
    return run_whitening(j, r, ssl_sdbn_defaults(), err);
}

static int run_cwrgp(const struct job *j, struct result *r, struct ssl_error *err)
{
    return run_whitening(j, r, ssl_cwrgp_defaults(), err);
}

static int run_w2(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_w2_opts o = ssl_w2_defaults();
    o.cov_eps = ssl_config_float(j->cfg, "loss.w2.cov_eps");
    double *work = xcalloc(ssl_w2_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_w2_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o, j->ctx,
                         work);
    free(work);
    return rc;
}

static int run_uniformity(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_uniformity_opts o = ssl_uniformity_defaults();
    o.t = ssl_config_float(j->cfg, "loss.uniformity.t");
    double *work = xcalloc(ssl_uniformity_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_uniformity_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                                 j->ctx, work);
    free(work);
    return rc;
}

static int run_alignment(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_alignment_opts o = ssl_alignment_defaults();
    o.alpha = ssl_config_float(j->cfg, "loss.alignment.alpha");
    double *work = xcalloc(ssl_alignment_work_elems(j->ctx, n, d, &o), sizeof(double));
    int rc = ssl_alignment_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                                j->ctx, work);
    free(work);
    return rc;
}

/* Whitening losses whose options cannot fit the batch are skipped (SSL_E_USAGE from
 * ssl_whitening_validate) unless named; see main. Per-row vs replicated inputs: only /queue
 * (MoCo, no gradient) and /prototypes (SwAV, gradient summed over the ranks) are replicated. */
static const struct loss_def LOSSES[] = {
    {"simclr", ZZ, ZZ, run_simclr, false},
    {"moco", ZZ | BIT(IN_T1) | BIT(IN_T2) | BIT(IN_QUEUE), ZZ, run_moco, false},
    {"byol", PT, PP, run_byol, false},
    {"simsiam", PT, PP, run_simsiam, false},
    {"swav", ZZ | BIT(IN_PROTO), ZZ | BIT(IN_PROTO), run_swav, false},
    {"barlow", ZZ, ZZ, run_barlow, false},
    {"vicreg", ZZ, ZZ, run_vicreg, false},
    {"zero_fcl", ZZ, ZZ, run_zero_fcl, true},
    {"zero_icl", ZZ, ZZ, run_zero_icl, true},
    {"wmse", ZZ, ZZ, run_wmse, true},
    {"sdbn", ZZ, ZZ, run_sdbn, true},
    {"cwrgp", ZZ, ZZ, run_cwrgp, true},
    {"rdm", PT, PP, run_rdm, false},
    {"w2", ZZ, ZZ, run_w2, false},
    {"uniformity", ZZ, ZZ, run_uniformity, false},
    {"alignment", ZZ, ZZ, run_alignment, false},
};
enum { N_LOSSES = (int)(sizeof LOSSES / sizeof LOSSES[0]) };

static bool is_whitening(const struct loss_def *l)
{
    return l->run == run_wmse || l->run == run_sdbn || l->run == run_cwrgp;
}

/* ---- input ---------------------------------------------------------------------------------- */

/* Collective. /z1's shape fixes N, d and this rank's block; N must split into P equal blocks
 * (the losses' per-rank modes need equal blocks, and equal blocks keep the split obvious). */
static enum ssl_status split_rows(struct inputs *in, int64_t rows, int64_t cols, const struct ssl_comm *comm,
                                  struct ssl_error *err)
{
    in->n_global = rows;
    in->d = cols;
    if (rows % comm->size != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "%s: /z1 has N = %lld rows, which P = %d ranks cannot split into equal "
                             "blocks (run with a number of ranks that divides N)",
                             in->path, (long long)rows, comm->size);
    in->n = rows / comm->size;
    in->row0 = (int64_t)comm->rank * in->n;
    return SSL_OK;
}

/* Not collective (every rank has the same shapes): input i against /z1. */
static enum ssl_status check_shape(const struct inputs *in, int i, const char *name, int64_t rows,
                                   int64_t cols, struct ssl_error *err)
{
    if (cols == in->d && (is_replicated(i) || rows == in->n_global)) return SSL_OK;
    return ssl_error_set(err, SSL_E_DATA, "%s: %s is (%lld, %lld); expected (%s, %lld) as /z1 (%lld, %lld)",
                         in->path, name, (long long)rows, (long long)cols, is_replicated(i) ? "K" : "N",
                         (long long)in->d, (long long)in->n_global, (long long)in->d);
}

/* Collective. Input i (absent and optional: left NULL): its shape, then this rank's rows (all
 * rows of a replicated input) with a collective read. */
static enum ssl_status read_input(struct ssl_h5_reader *r, struct inputs *in, int i,
                                  const struct ssl_comm *comm, struct ssl_error *err)
{
    char name[32];
    snprintf(name, sizeof name, "/%s", INPUT_NAMES[i]);
    bool required = i == IN_Z1 || i == IN_Z2;
    if (!required && !ssl_h5_reader_has(r, name)) return SSL_OK;
    int64_t rows = 0, cols = 0;
    enum ssl_status rc = ssl_h5_reader_shape(r, name, &rows, &cols, err);
    if (rc) return rc;
    rc = i == IN_Z1 ? split_rows(in, rows, cols, comm, err) : check_shape(in, i, name, rows, cols, err);
    if ((rc = ssl_h5_agree(comm->world, rc, err)) != SSL_OK) return rc;
    in->file_rows[i] = rows;
    in->rows[i] = is_replicated(i) ? rows : in->n;
    return ssl_h5_reader_rows(r, name, is_replicated(i) ? 0 : in->row0, in->rows[i], &in->m[i], err);
}

/* Collective. Reads /z1, /z2 (required) and the optional inputs, checking every shape against
 * /z1. */
static enum ssl_status read_inputs(struct inputs *in, const struct ssl_comm *comm, struct ssl_error *err)
{
    struct ssl_h5_reader *r = NULL;
    enum ssl_status rc = ssl_h5_reader_open(&r, in->path, comm->world, err);
    /* a missing file is bad input here too (exit 3): the tool has no other input */
    if (rc == SSL_E_USAGE) err->code = rc = SSL_E_DATA;
    for (int i = 0; i < IN_COUNT && !rc; i++) rc = read_input(r, in, i, comm, err);
    ssl_h5_reader_close(r);
    return rc;
}

/* The absent inputs of l as "no /t1, /queue" into buf; false when all are present. */
static bool missing_inputs(const struct inputs *in, const struct loss_def *l, char *buf, size_t n_bytes)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < IN_COUNT; i++)
        if ((l->needs & BIT(i)) && in->m[i] == NULL && used < n_bytes)
            used += (size_t)snprintf(buf + used, n_bytes - used, "%s/%s", used ? ", " : "no ", INPUT_NAMES[i]);
    return used > 0;
}

/* ---- output --------------------------------------------------------------------------------- */

static enum ssl_status h5_fail(struct ssl_error *err, const char *path, const char *what)
{
    return ssl_error_set(err, SSL_E_OTHER, "%s: cannot write %s", path, what);
}

/* Which rows of a dataset this rank writes: [row0, row0 + rows) of data; rows = 0 selects
 * nothing (the rank still takes part in the collective write). */
struct slab {
    int64_t row0, rows;
    const double *data;
};

/* Selects the slab in fspace and sizes mspace to it; false on failure. */
static bool select_slab(hid_t fspace, hid_t *mspace, int ndims, const hsize_t *dims, struct slab s)
{
    if (s.rows == 0) {
        *mspace = H5Screate(H5S_SCALAR);
        return *mspace >= 0 && H5Sselect_none(*mspace) >= 0 && H5Sselect_none(fspace) >= 0;
    }
    if (ndims == 0) {
        *mspace = H5Screate(H5S_SCALAR);
        return *mspace >= 0;
    }
    hsize_t start[2] = {(hsize_t)s.row0, 0}, count[2] = {(hsize_t)s.rows, dims[1]};
    *mspace = H5Screate_simple(2, count, NULL);
    return *mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0;
}

/* Collective: creates loc/name (a scalar when ndims is 0, else dims) and writes this rank's
 * slab of it with the collective transfer list dxpl. */
static bool write_dataset(hid_t loc, const char *name, int ndims, const hsize_t *dims, struct slab s,
                          hid_t dxpl)
{
    hid_t space = ndims == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndims, dims, NULL);
    hid_t dset = space < 0 ? H5I_INVALID_HID
                           : H5Dcreate2(loc, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t mspace = H5I_INVALID_HID;
    bool ok = dset >= 0 && select_slab(space, &mspace, ndims, dims, s);
    double dummy = 0.0;
    if (dset >= 0) { /* every rank enters the collective write, a failed selection with nothing */
        if (!ok && mspace >= 0) H5Sselect_none(mspace);
        if (!ok) H5Sselect_none(space);
        bool wrote = H5Dwrite(dset, H5T_NATIVE_DOUBLE, mspace >= 0 ? mspace : H5S_ALL, space, dxpl,
                              ok && s.rows > 0 ? s.data : &dummy) >= 0;
        ok = H5Dclose(dset) >= 0 && wrote && ok;
    }
    if (mspace >= 0) H5Sclose(mspace);
    if (space >= 0) H5Sclose(space);
    return ok;
}

/* Collective: every rank writes the same attribute values (HDF5 requires it): strings as
 * variable-length UTF-8 (h5py reads str), as io/dataset_hdf5.c writes its attributes. */
static bool write_attrs(hid_t f, const char *source, int64_t ranks)
{
    struct ssl_error ignored = {.code = SSL_OK}; /* the caller says which file and what */
    return ssl_h5_write_string_attr(f, "source", source, "", &ignored) == SSL_OK &&
           ssl_h5_write_string_attr(f, "format", "ssltrain-loss", "", &ignored) == SSL_OK &&
           ssl_h5_write_i64_attr(f, "format_version", 1, "", &ignored) == SSL_OK &&
           ssl_h5_write_i64_attr(f, "ranks", ranks, "", &ignored) == SSL_OK;
}

/* Collective: OUT.h5.tmp created with the MPI-IO driver (*f, and the collective transfer list
 * *dxpl). */
static enum ssl_status create_output(const char *tmp, const struct ssl_comm *comm, hid_t *f, hid_t *dxpl,
                                     struct ssl_error *err)
{
    hid_t fapl = ssl_h5_mpio_fapl(comm->world);
    *f = fapl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : H5I_INVALID_HID;
    if (fapl >= 0) H5Pclose(fapl);
    if (*f < 0) return ssl_error_set(err, SSL_E_OTHER, "%s: cannot create", tmp);
    *dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (*dxpl < 0 || H5Pset_dxpl_mpio(*dxpl, H5FD_MPIO_COLLECTIVE) < 0)
        return ssl_error_set(err, SSL_E_OTHER, "%s: cannot set up collective writes", tmp);
    return SSL_OK;
}

/* Collective: the group of one loss: `value` (rank 0 writes it: every rank holds the same)
 * and grad_<input>: each rank its own rows of a per-row input; rank 0 all rows of a
 * replicated one (already summed over the ranks). */
static enum ssl_status write_loss(hid_t f, hid_t dxpl, const char *tmp, const struct job *j,
                                  const struct loss_def *l, const struct result *res, struct ssl_error *err)
{
    const struct inputs *in = j->in;
    bool root = j->comm->rank == 0;
    hid_t g = H5Gcreate2(f, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return h5_fail(err, tmp, l->name);
    enum ssl_status rc = SSL_OK;
    struct slab value = {.row0 = 0, .rows = root ? 1 : 0, .data = &res->value};
    if (!write_dataset(g, "value", 0, NULL, value, dxpl)) rc = h5_fail(err, tmp, l->name);
    for (int i = 0; i < IN_COUNT; i++) { /* no early exit: the writes are collective */
        if (!(l->grads & BIT(i))) continue;
        char name[32];
        snprintf(name, sizeof name, "grad_%s", INPUT_NAMES[i]);
        hsize_t dims[2] = {(hsize_t)in->file_rows[i], (hsize_t)in->d};
        struct slab s = {.row0 = in->row0, .rows = in->rows[i], .data = res->g[i]};
        if (is_replicated(i)) s = (struct slab){.row0 = 0, .rows = root ? in->rows[i] : 0, .data = res->g[i]};
        if (!write_dataset(g, name, 2, dims, s, dxpl) && !rc) rc = h5_fail(err, tmp, name);
    }
    if (H5Gclose(g) < 0 && !rc) rc = h5_fail(err, tmp, l->name);
    return rc;
}

/* Collective: after the file is closed on every rank, rank 0 renames it, or removes it after
 * a failure when it made it (made: its H5Fcreate succeeded); the rename's status is agreed. */
static enum ssl_status finish_output(const char *tmp, const char *out, const struct ssl_comm *comm,
                                     enum ssl_status rc, bool made, struct ssl_error *err)
{
    MPI_Barrier(comm->world);
    enum ssl_status mine = SSL_OK;
    if (comm->rank == 0 && !rc && rename(tmp, out) != 0)
        mine = ssl_error_set(err, SSL_E_OTHER, "%s: cannot rename to %s", tmp, out);
    if (!rc) rc = ssl_h5_agree(comm->world, mine, err);
    if (rc && made && comm->rank == 0) remove(tmp);
    return rc;
}

/* Collective. OUT.h5.tmp, then renamed: a crash never leaves a partial file named OUT.h5. */
static enum ssl_status write_output(const char *out, const struct job *j, const int *order, int n_done,
                                    const struct result *res, struct ssl_error *err)
{
    MPI_Comm world = j->comm->world;
    size_t len = strlen(out) + 5;
    char *tmp = xcalloc((int64_t)len, 1);
    snprintf(tmp, len, "%s.tmp", out);
    hid_t f = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    enum ssl_status rc = ssl_h5_agree(world, create_output(tmp, j->comm, &f, &dxpl, err), err);
    if (!rc && !write_attrs(f, j->in->path, j->comm->size)) rc = h5_fail(err, tmp, "the root attributes");
    rc = ssl_h5_agree(world, rc, err);
    for (int k = 0; k < n_done && !rc; k++)
        rc = ssl_h5_agree(world, write_loss(f, dxpl, tmp, j, &LOSSES[order[k]], &res[k], err), err);
    if (dxpl >= 0) H5Pclose(dxpl);
    bool made = f >= 0;
    enum ssl_status closed = made && H5Fclose(f) < 0 ? h5_fail(err, tmp, "the file (close)") : SSL_OK;
    closed = ssl_h5_agree(world, closed, err);
    if (!rc) rc = closed;
    rc = finish_output(tmp, out, j->comm, rc, made, err);
    free(tmp);
    return rc;
}

/* ---- command line --------------------------------------------------------------------------- */

static int find_loss(const char *name, size_t len)
{
    for (int i = 0; i < N_LOSSES; i++)
        if (strlen(LOSSES[i].name) == len && strncmp(LOSSES[i].name, name, len) == 0) return i;
    return -1;
}

/* --losses a,b,c into asked[]; an unknown name is a usage error listing the valid ones. */
static enum ssl_status parse_losses(const char *list, bool *asked, struct ssl_error *err)
{
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        int i = find_loss(p, len);
        if (i < 0) {
            char valid[512];
            size_t used = 0;
            for (int k = 0; k < N_LOSSES && used < sizeof valid; k++)
                used += (size_t)snprintf(valid + used, sizeof valid - used, "%s%s", k ? ", " : "", LOSSES[k].name);
            return ssl_error_set(err, SSL_E_USAGE, "--losses: unknown loss '%.*s' (valid: %s)", (int)len, p, valid);
        }
        asked[i] = true;
        p += len;
        if (*p == ',') p++;
    }
    return SSL_OK;
}

struct args {
    const char *in, *out, *losses;
    bool help;
};

/* loss.* (the losses' options and loss.per_rank) and linalg.* (the ScaLAPACK threshold of the
 * loss comm) are the keys that change what the tool computes. */
static bool tool_key(const char *arg)
{
    return strncmp(arg, "loss.", 5) == 0 || strncmp(arg, "linalg.", 7) == 0;
}

static enum ssl_status parse_args(int argc, char **argv, struct args *a, struct ssl_config *cfg,
                                  struct ssl_error *err)
{
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            a->help = true;
        } else if (strcmp(s, "--out") == 0 || strcmp(s, "--losses") == 0) {
            if (i + 1 >= argc) return ssl_error_set(err, SSL_E_USAGE, "%s needs a value", s);
            *(s[2] == 'o' ? &a->out : &a->losses) = argv[++i];
        } else if (strncmp(s, "--", 2) == 0) {
            return ssl_error_set(err, SSL_E_USAGE, "unknown option '%s'", s);
        } else if (strchr(s, '=') != NULL) {
            if (!tool_key(s))
                return ssl_error_set(err, SSL_E_USAGE,
                                     "'%s': only loss.* and linalg.* keys apply to ssltrain loss", s);
            enum ssl_status rc = ssl_config_set_arg(cfg, s, err);
            if (rc) return rc;
        } else if (a->in == NULL) {
            a->in = s;
        } else {
            return ssl_error_set(err, SSL_E_USAGE, "unexpected argument '%s' (one input file)", s);
        }
    }
    if (a->help) return SSL_OK;
    if (a->in == NULL) return ssl_error_set(err, SSL_E_USAGE, "loss needs an input file IN.h5");
    if (a->out == NULL) return ssl_error_set(err, SSL_E_USAGE, "loss needs --out OUT.h5");
    return SSL_OK;
}

static void free_result(struct result *r)
{
    for (int i = 0; i < IN_COUNT; i++) free(r->g[i]);
}

/* A loss's return code as a status, with a message naming the loss and the file in full (the
 * loss's own message in lerr, when it gave one). */
static enum ssl_status loss_failure(const struct job *j, const struct loss_def *l, int rc,
                                    const struct ssl_error *lerr, struct ssl_error *full)
{
    if (rc == 0) return SSL_OK;
    enum ssl_status st = rc == SSL_E_NONFINITE || rc == SSL_E_USAGE ? (enum ssl_status)rc : SSL_E_OTHER;
    if (lerr->msg[0]) return ssl_error_set(full, st, "%s: loss %s: %s", j->in->path, l->name, lerr->msg);
    if (rc == SSL_E_NONFINITE)
        return ssl_error_set(full, st, "%s: loss %s is not finite", j->in->path, l->name);
    return ssl_error_set(full, st, "%s: loss %s failed (status %d)", j->in->path, l->name, rc);
}

/* Collective, after a loss succeeded on every rank. The per-rank mode: the mean of the ranks'
 * values and the gradient of that mean (each rank's gradient / P), as DDP averages. Replicated
 * inputs: the gradient summed over the ranks (each rank's part is its rows' contribution). */
static int combine_ranks(const struct job *j, const struct loss_def *l, struct result *r)
{
    double p = (double)j->comm->size;
    int rc = 0;
    if (l->has_per_rank && j->per_rank) {
        rc = ssl_loss_sum(j->ctx, &r->value, 1);
        r->value /= p;
        for (int i = 0; i < IN_COUNT; i++)
            for (int64_t e = 0; r->g[i] != NULL && e < j->in->rows[i] * j->in->d; e++) r->g[i][e] /= p;
        size_t used = strlen(r->note);
        if (j->comm->size > 1 && used < sizeof r->note)
            snprintf(r->note + used, sizeof r->note - used, "%sloss.per_rank: the mean over %d ranks",
                     used ? "; " : "", j->comm->size);
    }
    for (int i = 0; i < IN_COUNT && rc == 0; i++)
        if ((l->grads & BIT(i)) && is_replicated(i))
            rc = ssl_loss_sum(j->ctx, r->g[i], j->in->rows[i] * j->in->d);
    return rc;
}

/* Collective. Runs one loss on every rank; the status (and, for a whitening loss that was not
 * named and whose options cannot fit, the reason it is skipped) is agreed. */
static enum ssl_status run_one(const struct job *j, const struct loss_def *l, struct result *r,
                               struct ssl_error *lerr, struct ssl_error *err)
{
    *r = (struct result){0};
    for (int i = 0; i < IN_COUNT; i++)
        if (l->grads & BIT(i)) r->g[i] = xcalloc(j->in->rows[i] * j->in->d, sizeof(double));
    int rc = l->run(j, r, lerr);
    enum ssl_status st = ssl_h5_agree(j->comm->world, loss_failure(j, l, rc, lerr, err), err);
    if (!st && combine_ranks(j, l, r) != 0)
        st = ssl_error_set(err, SSL_E_OTHER, "%s: loss %s: summing over the ranks failed", j->in->path,
                           l->name);
    if (st) free_result(r);
    return st;
}

/* Collective. Runs the losses of `order`; a failure is an error naming the loss. skipped
 * collects whitening losses whose options cannot fit the batch when they were not named. */
static enum ssl_status run_losses(const struct job *j, const bool *asked, int *order, int *n_order,
                                  struct result *res, cJSON *skipped, struct ssl_error *err)
{
    int kept = 0;
    for (int k = 0; k < *n_order; k++) {
        const struct loss_def *l = &LOSSES[order[k]];
        struct ssl_error lerr = {0}, full = {0};
        enum ssl_status st = run_one(j, l, &res[kept], &lerr, &full);
        /* option checks are the same on every rank: the loss's own reason, without the path */
        if (st == SSL_E_USAGE && is_whitening(l) && !asked[order[k]]) {
            cJSON_AddStringToObject(skipped, l->name, lerr.msg[0] ? lerr.msg : full.msg);
            continue;
        }
        if (st) {
            *n_order = kept;
            return ssl_error_set(err, st, "%s", full.msg);
        }
        order[kept++] = order[k];
    }
    *n_order = kept;
    return SSL_OK;
}

static void print_summary(const struct job *j, const int *order, int n_done, const struct result *res,
                          cJSON *skipped)
{
    const struct inputs *in = j->in;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", in->path);
    cJSON_AddNumberToObject(o, "n", (double)in->n_global);
    cJSON_AddNumberToObject(o, "d", (double)in->d);
    cJSON_AddNumberToObject(o, "ranks", (double)j->comm->size);
    cJSON_AddBoolToObject(o, "per_rank", j->per_rank);
    cJSON *losses = cJSON_AddObjectToObject(o, "losses");
    for (int k = 0; k < n_done; k++) {
        const struct loss_def *l = &LOSSES[order[k]];
        cJSON *e = cJSON_AddObjectToObject(losses, l->name);
        cJSON_AddNumberToObject(e, "value", res[k].value);
        cJSON *g = cJSON_AddArrayToObject(e, "grads");
        for (int i = 0; i < IN_COUNT; i++)
            if (l->grads & BIT(i)) cJSON_AddItemToArray(g, cJSON_CreateString(INPUT_NAMES[i]));
        if (res[k].note[0]) cJSON_AddStringToObject(e, "note", res[k].note);
    }
    cJSON_AddItemReferenceToObject(o, "skipped", skipped);
    char *text = cJSON_Print(o);
    SSL_CHECK(text != NULL);
    puts(text);
    fflush(stdout);
    free(text);
    cJSON_Delete(o);
}

/* The losses to run into order (every loss whose inputs are present, or the named ones);
 * absent inputs of an unnamed loss go to skipped. The same on every rank. */
static enum ssl_status select_losses(const struct inputs *in, const bool *asked, int *order, int *n_order,
                                     cJSON *skipped, struct ssl_error *err)
{
    bool any_asked = false;
    for (int i = 0; i < N_LOSSES; i++) any_asked = any_asked || asked[i];
    for (int i = 0; i < N_LOSSES; i++) {
        if (any_asked && !asked[i]) continue;
        char why[128];
        if (!missing_inputs(in, &LOSSES[i], why, sizeof why)) {
            order[(*n_order)++] = i;
        } else if (asked[i]) {
            return ssl_error_set(err, SSL_E_USAGE, "%s: loss %s needs inputs the file lacks (%s)", in->path,
                                 LOSSES[i].name, why);
        } else {
            cJSON_AddStringToObject(skipped, LOSSES[i].name, why);
        }
    }
    return SSL_OK;
}

/* Collective over comm (every step that can fail ends agreed). */
static enum ssl_status tool(int argc, char **argv, const struct ssl_comm *comm, struct ssl_error *err)
{
    struct ssl_config *cfg = NULL;
    struct args a = {0};
    struct inputs in = {0};
    bool asked[N_LOSSES] = {false};
    int order[N_LOSSES], n_order = 0, n_done = 0;
    struct result res[N_LOSSES];
    cJSON *skipped = cJSON_CreateObject();
    enum ssl_status rc = ssl_config_create(&cfg, err);
    if (!rc) rc = parse_args(argc, argv, &a, cfg, err);
    if (!rc && a.help && comm->rank == 0) fputs(SSL_LOSS_TOOL_HELP, stdout);
    if (!rc && !a.help && a.losses) rc = parse_losses(a.losses, asked, err);
    rc = ssl_h5_agree(comm->world, rc, err); /* the same arguments: the same result, agreed anyway */
    in.path = a.in;
    if (!rc && !a.help) rc = read_inputs(&in, comm, err);
    if (!rc && !a.help)
        rc = ssl_h5_agree(comm->world, select_losses(&in, asked, order, &n_order, skipped, err), err);
    /* seed 0, step 0: the tool's randomness inside losses is the same at every P */
    struct ssl_loss_comm lc;
    struct ssl_mpi_loss_ctx lctx;
    ssl_mpi_loss_comm_init(&lc, &lctx, comm, cfg ? ssl_config_int(cfg, "linalg.scalapack_threshold") : 0);
    struct ssl_loss_ctx ctx = {.comm = &lc, .seed = 0, .step = 0};
    struct job j = {.in = &in, .cfg = cfg, .ctx = &ctx, .comm = comm,
                    .per_rank = cfg && ssl_config_bool(cfg, "loss.per_rank")};
    if (!rc && !a.help) {
        n_done = n_order;
        rc = run_losses(&j, asked, order, &n_done, res, skipped, err);
    }
    if (!rc && !a.help) rc = write_output(a.out, &j, order, n_done, res, err);
    if (!rc && !a.help && comm->rank == 0) print_summary(&j, order, n_done, res, skipped);
    for (int k = 0; k < n_done; k++) free_result(&res[k]);
    for (int i = 0; i < IN_COUNT; i++) free(in.m[i]);
    cJSON_Delete(skipped);
    ssl_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    /* `ssltrain loss` execs this before any MPI call, so MPI starts here: under mpiexec every
     * process joins the job, alone it is a singleton */
    struct ssl_comm comm;
    if (ssl_comm_init(&comm, &argc, &argv) != 0) {
        fprintf(stderr, "ssltrain loss: MPI_Init failed\n");
        return (int)SSL_E_OTHER;
    }
    struct ssl_error err = {0};
    enum ssl_status rc = tool(argc, argv, &comm, &err);
    if (rc && comm.rank == 0) fprintf(stderr, "ssltrain loss: %s\n", err.msg[0] ? err.msg : "failed");
    ssl_comm_finalize(&comm);
    return (int)rc;
}
