/* loss_tool.c: `ssltrain-loss`, the offline loss tool behind `ssltrain loss` (src/main.c execs
 * it). Reads an HDF5 dump (/z1, /z2 and optional /p1, /p2, /t1, /t2, /queue, /prototypes),
 * computes the requested losses and their gradients with the fp64 build of the losses
 * (ssl_core_f64: ssl_real is double), writes OUT.h5 (via OUT.h5.tmp, renamed) and prints a
 * JSON summary on stdout. One process, no MPI calls (ctx NULL everywhere: the one-process
 * identities of src/losses/loss.h; randomness inside losses uses seed 0, step 0).
 *
 * Invariants: every input matrix is (rows, d) row-major double with one d for all; a gradient
 * buffer has its input's shape and starts at zero (the losses accumulate into it). Exit codes
 * are enum ssl_status: 2 usage, 3 bad input file, 4 non-finite loss, 1 anything else. */
#include <cjson/cJSON.h>
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "h5_matrix.h"
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

/* The inputs read from the file: m[i] (rows[i], d), NULL when the dataset is absent. */
struct inputs {
    const char *path;
    double *m[IN_COUNT];
    int64_t rows[IN_COUNT];
    int64_t n, d; /* of /z1 */
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
};

typedef int (*loss_fn)(const struct job *j, struct result *r, struct ssl_error *err);

struct loss_def {
    const char *name;
    unsigned needs; /* input bits */
    unsigned grads; /* input bits that get a gradient */
    loss_fn run;
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

static int run_simclr(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_simclr_opts o = ssl_simclr_defaults();
    o.temperature = ssl_config_float(j->cfg, "loss.simclr.temperature");
    double *work = xcalloc(ssl_simclr_nt_xent_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_simclr_nt_xent_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                                     NULL, work);
    free(work);
    return rc;
}

static int run_moco(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d, k = j->in->rows[IN_QUEUE];
    struct ssl_moco_opts o = ssl_moco_defaults();
    o.temperature = ssl_config_float(j->cfg, "loss.moco.temperature");
    double *work = xcalloc(ssl_moco_sym_work_elems(NULL, n, d, k, &o), sizeof(double));
    int rc = ssl_moco_sym_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), M(IN_T1),
                               M(IN_T2), j->in->m[IN_QUEUE], n, d, k, &o, NULL, work);
    free(work);
    return rc;
}

static int run_byol(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    double *work = xcalloc(ssl_byol_work_elems(NULL, n, d, NULL), sizeof(double));
    int rc = ssl_byol_loss(&r->value, r->g[IN_P1], r->g[IN_P2], M(IN_P1), M(IN_P2), M(IN_T1), M(IN_T2),
                           n, d, NULL, NULL, work);
    free(work);
    return rc;
}

static int run_simsiam(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    double *work = xcalloc(ssl_simsiam_work_elems(NULL, n, d, NULL), sizeof(double));
    int rc = ssl_simsiam_loss(&r->value, r->g[IN_P1], r->g[IN_P2], M(IN_P1), M(IN_P2), M(IN_T1),
                              M(IN_T2), n, d, NULL, NULL, work);
    free(work);
    return rc;
}

static int run_rdm(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    double *work = xcalloc(ssl_rdm_work_elems(NULL, n, d, NULL), sizeof(double));
    int rc = ssl_rdm_loss(&r->value, r->g[IN_P1], r->g[IN_P2], M(IN_P1), M(IN_P2), M(IN_T1), M(IN_T2),
                          n, d, NULL, NULL, work);
    free(work);
    return rc;
}

/* The two views are the two large crops: z = [z1; z2] (2n, d). Prototypes are used as given. */
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
    double *work = xcalloc(ssl_swav_work_elems(NULL, n, d, k, 2, &o), sizeof(double));
    int rc = ssl_swav_loss(&r->value, NULL, dz, r->g[IN_PROTO], z, M(IN_PROTO), n, d, k, 2, &o, NULL, work);
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
    double *work = xcalloc(ssl_barlow_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_barlow_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o, NULL,
                             work);
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
    double *work = xcalloc(ssl_vicreg_full_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_vicreg_full_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o,
                                  NULL, work);
    free(work);
    return rc;
}

static int run_zerocl(const struct job *j, struct result *r, enum ssl_zerocl_mode mode)
{
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_zerocl_opts o = ssl_zerocl_defaults(mode);
    double *work = xcalloc(ssl_zerocl_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_zerocl_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o, NULL,
                             work);
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

/* The method's defaults fitted to a dump's batch: w_size (when it is not the whole batch)
 * becomes the largest divisor of n not above the default, and for channel whitening also not
 * above the rank of a group (d - 1 for one group); Shuffled-DBN's groups become the largest
 * divisor of d not above the default. Each change is written to note. */
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
    o = fit_whitening(o, n, d, r->note, sizeof r->note);
    enum ssl_status st = ssl_whitening_validate(&o, 2, n, d, err);
    if (st != SSL_OK) return (int)st;
    const ssl_real *z[2] = {M(IN_Z1), M(IN_Z2)};
    ssl_real *dz[2] = {r->g[IN_Z1], r->g[IN_Z2]};
    double *work = xcalloc(ssl_whitening_work_elems(NULL, n, d, &o, 2), sizeof(double));
    int rc = ssl_whitening_loss(&r->value, dz, z, 2, n, d, &o, NULL, work, err);
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
    double *work = xcalloc(ssl_w2_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_w2_loss(&r->value, NULL, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o, NULL, work);
    free(work);
    return rc;
}

static int run_uniformity(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_uniformity_opts o = ssl_uniformity_defaults();
    o.t = ssl_config_float(j->cfg, "loss.uniformity.t");
    double *work = xcalloc(ssl_uniformity_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_uniformity_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o, NULL,
                                 work);
    free(work);
    return rc;
}

static int run_alignment(const struct job *j, struct result *r, struct ssl_error *err)
{
    (void)err;
    int64_t n = j->in->n, d = j->in->d;
    struct ssl_alignment_opts o = ssl_alignment_defaults();
    o.alpha = ssl_config_float(j->cfg, "loss.alignment.alpha");
    double *work = xcalloc(ssl_alignment_work_elems(NULL, n, d, &o), sizeof(double));
    int rc = ssl_alignment_loss(&r->value, r->g[IN_Z1], r->g[IN_Z2], M(IN_Z1), M(IN_Z2), n, d, &o, NULL,
                                work);
    free(work);
    return rc;
}

/* Whitening losses whose options cannot fit the batch are skipped (SSL_E_USAGE from
 * ssl_whitening_validate) unless named; see main. */
static const struct loss_def LOSSES[] = {
    {"simclr", ZZ, ZZ, run_simclr},
    {"moco", ZZ | BIT(IN_T1) | BIT(IN_T2) | BIT(IN_QUEUE), ZZ, run_moco},
    {"byol", PT, PP, run_byol},
    {"simsiam", PT, PP, run_simsiam},
    {"swav", ZZ | BIT(IN_PROTO), ZZ | BIT(IN_PROTO), run_swav},
    {"barlow", ZZ, ZZ, run_barlow},
    {"vicreg", ZZ, ZZ, run_vicreg},
    {"zero_fcl", ZZ, ZZ, run_zero_fcl},
    {"zero_icl", ZZ, ZZ, run_zero_icl},
    {"wmse", ZZ, ZZ, run_wmse},
    {"sdbn", ZZ, ZZ, run_sdbn},
    {"cwrgp", ZZ, ZZ, run_cwrgp},
    {"rdm", PT, PP, run_rdm},
    {"w2", ZZ, ZZ, run_w2},
    {"uniformity", ZZ, ZZ, run_uniformity},
    {"alignment", ZZ, ZZ, run_alignment},
};
enum { N_LOSSES = (int)(sizeof LOSSES / sizeof LOSSES[0]) };

static bool is_whitening(const struct loss_def *l)
{
    return l->run == run_wmse || l->run == run_sdbn || l->run == run_cwrgp;
}

/* ---- input ---------------------------------------------------------------------------------- */

/* Reads /z1, /z2 (required) and the optional inputs, checking every shape against /z1. */
static enum ssl_status read_inputs(struct inputs *in, struct ssl_error *err)
{
    for (int i = 0; i < IN_COUNT; i++) {
        char name[32];
        snprintf(name, sizeof name, "/%s", INPUT_NAMES[i]);
        bool required = i == IN_Z1 || i == IN_Z2;
        if (!required && !ssl_h5_has(in->path, name)) continue;
        int64_t rows = 0, cols = 0;
        enum ssl_status rc = ssl_h5_read_matrix(in->path, name, &in->m[i], &rows, &cols, err);
        /* a missing file is bad input here too (exit 3): the tool has no other input */
        if (rc == SSL_E_USAGE) err->code = rc = SSL_E_DATA;
        if (rc) return rc;
        in->rows[i] = rows;
        if (i == IN_Z1) {
            in->n = rows;
            in->d = cols;
        } else if (cols != in->d || (i != IN_QUEUE && i != IN_PROTO && rows != in->n)) {
            return ssl_error_set(err, SSL_E_DATA, "%s: %s is (%lld, %lld); expected (%s, %lld) as /z1 (%lld, %lld)",
                                 in->path, name, (long long)rows, (long long)cols,
                                 i == IN_QUEUE || i == IN_PROTO ? "K" : "N", (long long)in->d,
                                 (long long)in->n, (long long)in->d);
        }
    }
    return SSL_OK;
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

static bool write_dataset(hid_t loc, const char *name, int rank, const hsize_t *dims, const double *data)
{
    hid_t space = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    hid_t dset = space < 0 ? H5I_INVALID_HID
                           : H5Dcreate2(loc, name, H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = dset >= 0 && H5Dwrite(dset, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (dset >= 0) ok = H5Dclose(dset) >= 0 && ok;
    if (space >= 0) H5Sclose(space);
    return ok;
}

static bool write_attrs(hid_t f, const char *source)
{
    /* variable-length UTF-8 (h5py reads str), as io/dataset_hdf5.c writes its attributes */
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR);
    bool ok = type >= 0 && space >= 0 && H5Tset_size(type, H5T_VARIABLE) >= 0 &&
              H5Tset_cset(type, H5T_CSET_UTF8) >= 0;
    const char *names[2] = {"source", "format"}, *values[2] = {source, "ssltrain-loss"};
    for (int i = 0; i < 2 && ok; i++) {
        hid_t a = H5Acreate2(f, names[i], type, space, H5P_DEFAULT, H5P_DEFAULT);
        ok = a >= 0 && H5Awrite(a, type, &values[i]) >= 0;
        if (a >= 0) ok = H5Aclose(a) >= 0 && ok;
    }
    int64_t version = 1;
    hid_t a = ok ? H5Acreate2(f, "format_version", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT)
                 : H5I_INVALID_HID;
    ok = ok && a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &version) >= 0;
    if (a >= 0) ok = H5Aclose(a) >= 0 && ok;
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    return ok;
}

/* OUT.h5.tmp, then renamed: a crash never leaves a partial file named OUT.h5. */
static enum ssl_status write_output(const char *out, const struct inputs *in, const int *order, int n_done,
                                    const struct result *res, struct ssl_error *err)
{
    size_t len = strlen(out) + 5;
    char *tmp = xcalloc((int64_t)len, 1);
    snprintf(tmp, len, "%s.tmp", out);
    enum ssl_status rc = SSL_OK;
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) rc = ssl_error_set(err, SSL_E_OTHER, "%s: cannot create", tmp);
    if (!rc && !write_attrs(f, in->path)) rc = h5_fail(err, tmp, "the root attributes");
    for (int k = 0; k < n_done && !rc; k++) {
        const struct loss_def *l = &LOSSES[order[k]];
        hid_t g = H5Gcreate2(f, l->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0 || !write_dataset(g, "value", 0, NULL, &res[k].value)) rc = h5_fail(err, tmp, l->name);
        for (int i = 0; i < IN_COUNT && !rc; i++) {
            if (!(l->grads & BIT(i))) continue;
            char name[32];
            snprintf(name, sizeof name, "grad_%s", INPUT_NAMES[i]);
            hsize_t dims[2] = {(hsize_t)in->rows[i], (hsize_t)in->d};
            if (!write_dataset(g, name, 2, dims, res[k].g[i])) rc = h5_fail(err, tmp, name);
        }
        if (g >= 0) H5Gclose(g);
    }
    if (f >= 0 && H5Fclose(f) < 0 && !rc) rc = h5_fail(err, tmp, "the file (close)");
    if (!rc && rename(tmp, out) != 0) rc = ssl_error_set(err, SSL_E_OTHER, "%s: cannot rename to %s", tmp, out);
    if (rc) remove(tmp);
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
            if (strncmp(s, "loss.", 5) != 0)
                return ssl_error_set(err, SSL_E_USAGE, "'%s': only loss.* keys apply to ssltrain loss", s);
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

/* Runs the losses of `order`; a failure is an error naming the loss. skipped collects
 * whitening losses whose options cannot fit the batch when they were not named. */
static enum ssl_status run_losses(const struct job *j, const bool *asked, int *order, int *n_order,
                                  struct result *res, cJSON *skipped, struct ssl_error *err)
{
    int kept = 0;
    for (int k = 0; k < *n_order; k++) {
        const struct loss_def *l = &LOSSES[order[k]];
        struct result *r = &res[kept];
        *r = (struct result){0};
        for (int i = 0; i < IN_COUNT; i++)
            if (l->grads & BIT(i)) r->g[i] = xcalloc(j->in->rows[i] * j->in->d, sizeof(double));
        struct ssl_error lerr = {0};
        int rc = l->run(j, r, &lerr);
        if (rc == SSL_E_USAGE && is_whitening(l) && !asked[order[k]]) {
            cJSON_AddStringToObject(skipped, l->name, lerr.msg);
            free_result(r);
            continue;
        }
        if (rc) {
            free_result(r);
            *n_order = kept;
            enum ssl_status st = rc == SSL_E_NONFINITE || rc == SSL_E_USAGE ? (enum ssl_status)rc : SSL_E_OTHER;
            if (lerr.msg[0]) return ssl_error_set(err, st, "%s: loss %s: %s", j->in->path, l->name, lerr.msg);
            if (rc == SSL_E_NONFINITE)
                return ssl_error_set(err, st, "%s: loss %s is not finite", j->in->path, l->name);
            return ssl_error_set(err, st, "%s: loss %s failed (status %d)", j->in->path, l->name, rc);
        }
        order[kept++] = order[k];
    }
    *n_order = kept;
    return SSL_OK;
}

static void print_summary(const struct inputs *in, const int *order, int n_done, const struct result *res,
                          cJSON *skipped)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", in->path);
    cJSON_AddNumberToObject(o, "n", (double)in->n);
    cJSON_AddNumberToObject(o, "d", (double)in->d);
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
    free(text);
    cJSON_Delete(o);
}

static enum ssl_status tool(int argc, char **argv, struct ssl_error *err)
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
    if (!rc && a.help) fputs(SSL_LOSS_TOOL_HELP, stdout);
    if (!rc && !a.help && a.losses) rc = parse_losses(a.losses, asked, err);
    in.path = a.in;
    if (!rc && !a.help) rc = read_inputs(&in, err);
    bool any_asked = false;
    for (int i = 0; i < N_LOSSES; i++) any_asked = any_asked || asked[i];
    for (int i = 0; i < N_LOSSES && !rc && !a.help; i++) {
        if (any_asked && !asked[i]) continue;
        char why[128];
        if (!missing_inputs(&in, &LOSSES[i], why, sizeof why)) order[n_order++] = i;
        else if (asked[i]) rc = ssl_error_set(err, SSL_E_USAGE, "%s: loss %s needs inputs the file lacks (%s)", in.path, LOSSES[i].name, why);
        else cJSON_AddStringToObject(skipped, LOSSES[i].name, why);
    }
    struct job j = {.in = &in, .cfg = cfg};
    if (!rc && !a.help) {
        n_done = n_order;
        rc = run_losses(&j, asked, order, &n_done, res, skipped, err);
    }
    if (!rc && !a.help) rc = write_output(a.out, &in, order, n_done, res, err);
    if (!rc && !a.help) print_summary(&in, order, n_done, res, skipped);
    for (int k = 0; k < n_done; k++) free_result(&res[k]);
    for (int i = 0; i < IN_COUNT; i++) free(in.m[i]);
    cJSON_Delete(skipped);
    ssl_config_free(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    struct ssl_error err = {0};
    enum ssl_status rc = tool(argc, argv, &err);
    if (rc) fprintf(stderr, "ssltrain loss: %s\n", err.msg[0] ? err.msg : "failed");
    return (int)rc;
}
