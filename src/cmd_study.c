/* cmd_study.c: the synthetic studies of "Rethinking the Uniformity Metric in Self-Supervised
 * Learning" (Fang et al., ICLR 2024), repository statsle/WassersteinSSL [a16a931b14]. Each
 * study generates its data as the named script does (shapes, levels, zero blocks, Python's
 * int() truncation, whether rows are normalised) and measures W2 (ssl_metric_w2) and L_U
 * (ssl_metric_uniformity, t = 2); docs/LOSSES.md "ssltrain study" lists the scripts.
 *
 * Invariants: all random data comes from SSL_RNG_BENCH streams keyed by (seed; study index,
 * configuration index, 0|1), so a configuration's numbers do not depend on which others run.
 * Both metrics normalise rows themselves (torch's F.normalize), which equals the scripts'
 * explicit F.normalize wherever the script normalises. Where a script measures rows it did
 * not normalise (feature cloning), the script's value is recovered exactly from the
 * normalised one (see study_feature_cloning). Zero columns add nothing to a squared distance
 * or a norm, so L_U is evaluated on the non-zero columns only: the same sums, a fraction of
 * the O(n^2 d) cost. */
#include "cmd_study.h"

#include <cairo.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "metrics.h"
#include "real.h"
#include "rng.h"

#define MAX_COLS 8

/* One study's results: n_rows rows of n_cols doubles, plus how to plot them. */
struct table {
    const char *study;
    const char *title; /* one line: the source script and sizes */
    char note[512];    /* printed under the table */
    int n_cols;
    const char *cols[MAX_COLS];
    int64_t n_rows, cap;
    double *v; /* (n_rows, n_cols) */
    int x_col, group_col, w2_col, lu_col, w2_ref_col; /* -1: none */
    bool log2_x;
};

static void table_init(struct table *t, const char *study, int n_cols, const char *const *cols)
{
    *t = (struct table){.study = study, .n_cols = n_cols, .x_col = 0, .group_col = -1,
                        .w2_ref_col = -1};
    SSL_CHECK(n_cols <= MAX_COLS);
    for (int c = 0; c < n_cols; c++) {
        t->cols[c] = cols[c];
        if (strcmp(cols[c], "w2") == 0) t->w2_col = c;
        if (strcmp(cols[c], "lu") == 0) t->lu_col = c;
    }
}

static void table_add(struct table *t, const double *row)
{
    if (t->n_rows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 32;
        t->v = realloc(t->v, (size_t)(t->cap * t->n_cols) * sizeof *t->v);
        SSL_CHECK(t->v != NULL);
    }
    memcpy(t->v + t->n_rows * t->n_cols, row, (size_t)t->n_cols * sizeof *row);
    t->n_rows++;
}

/* ---- data and metrics --------------------------------------------------------------- */

/* Python's int(a * b) for the scripts' sub-dimensions, in the same double arithmetic. */
static int64_t py_int(double x) { return (int64_t)x; }

static float *alloc_floats(int64_t n_elems)
{
    float *p = calloc((size_t)(n_elems > 0 ? n_elems : 1), sizeof *p);
    SSL_CHECK(p != NULL);
    return p;
}

/* torch.randn(n, d) in row-major order, from the stream (seed; study, config, which). */
static float *randn(uint64_t seed, uint32_t study, uint32_t config, uint32_t which, int64_t n,
                    int64_t d)
{
    struct ssl_rng r;
    ssl_rng_init(&r, seed, SSL_RNG_BENCH, study, config, which);
    float *a = alloc_floats(n * d);
    for (int64_t i = 0; i < n * d; i++) a[i] = (float)ssl_rng_normal(&r);
    return a;
}

/* [a, 0]: the (n, k) block a in the first k of d columns, zeros after (torch.cat of A1, A2). */
static float *pad_columns(const float *a /* (n, k) */, int64_t n, int64_t k, int64_t d)
{
    float *x = alloc_floats(n * d);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < k; j++) x[i * d + j] = a[i * k + j];
    return x;
}

static double w2_sq_of(const float *x /* (n, d) */, int64_t n, int64_t d)
{
    double *work = malloc((size_t)ssl_metrics_work_elems(n, d) * sizeof *work);
    SSL_CHECK(work != NULL);
    double v = ssl_metric_w2_sq(x, n, d, work);
    free(work);
    return v;
}

static double w2_of(const float *x /* (n, d) */, int64_t n, int64_t d)
{
    return sqrt(fmax(0.0, w2_sq_of(x, n, d)));
}

/* L_U with t on the first rows of x (all when lu_rows is 0). k = 0 columns means every row is
 * the zero vector, which F.normalize keeps at zero: every distance is 0 and L_U = log 1 = 0. */
static double lu_of(const float *x /* (n, k) */, int64_t n, int64_t k, int64_t lu_rows, double t)
{
    int64_t rows = lu_rows > 0 && lu_rows < n ? lu_rows : n;
    if (k == 0) return 0.0;
    return ssl_metric_uniformity(x, rows, k, t);
}

struct ctx {
    uint64_t seed;
    bool quick;
    int64_t lu_rows; /* resolved: 0 = all */
};

static int64_t lu_count(const struct ctx *c, int64_t n)
{
    return c->lu_rows > 0 && c->lu_rows < n ? c->lu_rows : n;
}

static void lu_note(struct table *t, const struct ctx *c, int64_t n)
{
    size_t len = strlen(t->note);
    if (lu_count(c, n) < n)
        snprintf(t->note + len, sizeof t->note - len,
                 " L_U on the first %lld of the %lld rows (--lu-rows; 0 = all).",
                 (long long)lu_count(c, n), (long long)n);
}

/* ---- the studies -------------------------------------------------------------------- */

/* DistributionApproximation/Density1DPlot.py: N = 200000 rows of randn(N, dim), normalised,
 * against C = randn(N, dim) / sqrt(dim); the script bins the first coordinate of each into
 * 51 bins of width 2/51 on [-1, 1) (values outside [-1, 1) are counted nowhere) for dim = 128,
 * and its figures show dim = 2..256. Here, for dim = 2, 4, ..., 256: W2 and L_U of the
 * normalised rows and the total variation 0.5 sum |p_source - p_target| of those histograms. */
static void study_distribution(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"dim", "n", "w2", "lu", "tv_coord0"};
    table_init(t, "distribution", 5, cols);
    t->log2_x = true;
    int64_t n = c->quick ? 2000 : 200000;
    enum { BINS = 51 };
    const double bin = 2.0 / BINS;
    for (int64_t dim = 2, cfg = 0; dim <= 256; dim *= 2, cfg++) {
        float *a = randn(c->seed, 1, (uint32_t)cfg, 0, n, dim);
        float *b = randn(c->seed, 1, (uint32_t)cfg, 1, n, 1); /* C[:, 0] * sqrt(dim) */
        double ps[BINS] = {0}, pt[BINS] = {0};
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < dim; j++) s += (double)a[i * dim + j] * (double)a[i * dim + j];
            double src = (double)a[i * dim] / fmax(sqrt(s), 1e-12);
            double tgt = (double)(b[i] / sqrtf((float)dim));
            if (src >= -1.0 && src < 1.0) ps[(int)((src + 1) / bin)] += 1.0 / (double)n;
            if (tgt >= -1.0 && tgt < 1.0) pt[(int)((tgt + 1) / bin)] += 1.0 / (double)n;
        }
        double tv = 0;
        for (int k = 0; k < BINS; k++) tv += 0.5 * fabs(ps[k] - pt[k]);
        double row[] = {(double)dim, (double)n, w2_of(a, n, dim), lu_of(a, n, dim, c->lu_rows, 2.0), tv};
        table_add(t, row);
        free(a);
        free(b);
    }
    t->title = "uniform sphere n(randn(N, dim)) vs N(0, I/dim): DistributionApproximation/Density1DPlot.py";
    snprintf(t->note, sizeof t->note, "N = %lld (official 200000); tv_coord0: the script's 51-bin "
             "histograms of coordinate 0, source vs target.", (long long)n);
    lu_note(t, c, n);
}

/* EmpiricalStudy/DimensionalCollapseDegrees/AnalysisOnCollapseLevel.py: N = 20000; for
 * m in {200, 500, 1000}: k = int(m*(1-eta)) columns randn, then int(m*eta) zero columns
 * (at eta = 0.9, m = 200: 19 + 180 = 199 columns), F.normalize, W2 and L_U. The script's
 * active list is [0.98, 0.99, 1.0]; its commented list, the paper's figure, is 0:0.05:1. */
static void study_collapse(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"m", "eta", "k", "d", "w2", "w2_pop", "lu", "lu_pop"};
    table_init(t, "collapse", 8, cols);
    t->x_col = 1;
    t->group_col = 0;
    t->w2_ref_col = 5;
    static const double quick_eta[] = {0, 0.25, 0.5, 0.75, 0.9};
    static const double full_eta[] = {0, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50,
                                      0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 1.0};
    static const int64_t quick_m[] = {200}, full_m[] = {200, 500, 1000};
    const double *etas = c->quick ? quick_eta : full_eta;
    int n_eta = c->quick ? 5 : 21, n_m = c->quick ? 1 : 3;
    const int64_t *ms = c->quick ? quick_m : full_m;
    int64_t n = c->quick ? 3000 : 20000;
    for (int im = 0; im < n_m; im++)
        for (int ie = 0; ie < n_eta; ie++) {
            int64_t m = ms[im];
            double eta = etas[ie];
            int64_t k = py_int((double)m * (1.0 - eta)), z = py_int((double)m * eta), d = k + z;
            float *a = randn(c->seed, 2, (uint32_t)(im * 100 + ie), 0, n, k);
            float *x = pad_columns(a, n, k, d);
            /* population: rows uniform on the sphere of the first m(1-eta) coordinates */
            double w2_pop = sqrt(2.0 - 2.0 * sqrt(1.0 - eta));
            double lu_pop = k > 0 ? -4.0 + 8.0 / (double)k : 0.0;
            double row[] = {(double)m, eta, (double)k, (double)d, w2_of(x, n, d), w2_pop,
                            lu_of(a, n, k, c->lu_rows, 2.0), lu_pop};
            table_add(t, row);
            free(a);
            free(x);
        }
    t->title = "dimensional collapse: EmpiricalStudy/DimensionalCollapseDegrees/AnalysisOnCollapseLevel.py";
    snprintf(t->note, sizeof t->note,
             "N = %lld (official 20000). k = int(m(1-eta)) N(0,1) columns, then int(m eta) zero "
             "columns, rows normalised. w2_pop = sqrt(2 - 2 sqrt(1 - eta)); lu_pop ~ -4 + "
             "8/k (at eta = 1 the rows are 0: W2 = 1, L_U = 0).", (long long)n);
    lu_note(t, c, n);
}

/* EmpiricalStudy/Dimensions/AnalysisOnDimension.py: N = 50000; dim in 2, 4, ..., 4096; for
 * dim = 2 the 50% and 100% cases, else int(dim*f) randn columns and int(dim*(1-f)) zero
 * columns for f = 0.25, 0.5, 0.75, and randn(N, dim) for 100%; normalised. */
static void study_dimension(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"dim", "frac", "k", "w2", "lu"};
    table_init(t, "dimension", 5, cols);
    t->group_col = 1;
    t->log2_x = true;
    static const double fracs[] = {0.25, 0.5, 0.75, 1.0};
    int64_t n = c->quick ? 1000 : 50000, max_dim = c->quick ? 256 : 4096;
    uint32_t cfg = 0;
    for (int f = 0; f < 4; f++)
        for (int64_t dim = 2; dim <= max_dim; dim *= 2, cfg++) {
            if (dim == 2 && (f == 0 || f == 2)) continue;
            int64_t k = py_int((double)dim * fracs[f]), z = py_int((double)dim * (1.0 - fracs[f]));
            float *a = randn(c->seed, 3, cfg, 0, n, k);
            float *x = pad_columns(a, n, k, k + z);
            double row[] = {(double)dim, fracs[f], (double)k, w2_of(x, n, k + z),
                            lu_of(a, n, k, c->lu_rows, 2.0)};
            table_add(t, row);
            free(a);
            free(x);
        }
    t->title = "sensitivity to the dimension: EmpiricalStudy/Dimensions/AnalysisOnDimension.py";
    snprintf(t->note, sizeof t->note, "N = %lld (official 50000), dim up to %lld (official 4096); "
             "frac: share of N(0,1) columns, the rest zero.", (long long)n, (long long)max_dim);
    lu_note(t, c, n);
}

/* Shared by the two feature studies: levels [0.75, 0.5, 0.25], D = 32, N = 50000; B = n([randn
 * (N, int(D(1-eta))), zeros(N, int(D eta))]); m = 0..10. */
static const double feature_levels[] = {0.75, 0.50, 0.25};
enum { FEATURE_D = 32, FEATURE_M = 10 };

/* EmpiricalStudy/FeatureCloningConstraint/AnalysisOnProperty4.py: B_cat = [B, B, ..., B]
 * (m + 1 copies) is measured WITHOUT renormalising (the script's normalize is commented out),
 * so its rows have norm c = sqrt(m + 1). The metrics normalise; the script's values follow
 * exactly: with x = c y (|y_i| = 1), ||mu_x||^2 + tr Sigma_x = c^2 and sum sqrt(lam_x) =
 * c sum sqrt(lam_y), so W2(x)^2 = c^2 + 1 - c (2 - W2(y)^2); and |x_i - x_j|^2 = c^2 |b_i -
 * b_j|^2, so L_U(x, t) = L_U(B, t c^2). */
static void study_feature_cloning(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"eta", "m", "d", "w2", "lu", "w2_renorm"};
    table_init(t, "feature-cloning", 6, cols);
    t->x_col = 1;
    t->group_col = 0;
    int64_t n = c->quick ? 1000 : 50000, D = FEATURE_D;
    for (int l = 0; l < 3; l++) {
        int64_t k = py_int((double)D * (1.0 - feature_levels[l])), z = py_int((double)D * feature_levels[l]);
        float *a = randn(c->seed, 4, (uint32_t)l, 0, n, k);
        for (int64_t m = 0; m <= FEATURE_M; m++) {
            int64_t d = (m + 1) * (k + z);
            float *x = alloc_floats(n * d);
            for (int64_t i = 0; i < n; i++)
                for (int64_t r = 0; r <= m; r++)
                    for (int64_t j = 0; j < k; j++) x[i * d + r * (k + z) + j] = a[i * k + j];
            double cc = sqrt((double)(m + 1)), w2_y = w2_sq_of(x, n, d);
            double w2 = sqrt(fmax(0.0, cc * cc + 1.0 - cc * (2.0 - w2_y)));
            double row[] = {feature_levels[l], (double)m, (double)d, w2,
                            lu_of(a, n, k, c->lu_rows, 2.0 * (double)(m + 1)), sqrt(fmax(0.0, w2_y))};
            table_add(t, row);
            free(x);
        }
        free(a);
    }
    t->title = "feature cloning [B, ..., B] (not renormalised): EmpiricalStudy/FeatureCloningConstraint/AnalysisOnProperty4.py";
    snprintf(t->note, sizeof t->note, "N = %lld (official 50000), D = 32. As the script, the "
             "concatenation is not renormalised (row norm sqrt(m+1)); w2_renorm is W2 of the "
             "renormalised rows.", (long long)n);
    lu_note(t, c, n);
}

/* EmpiricalStudy/FeatureBabyConstraint/AnalysisOnProperty5.py: B_cat = [B, 0_(N,D) x m]; its
 * rows keep norm 1, so normalising again changes nothing. */
static void study_feature_baby(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"eta", "m", "d", "w2", "lu"};
    table_init(t, "feature-baby", 5, cols);
    t->x_col = 1;
    t->group_col = 0;
    int64_t n = c->quick ? 1000 : 50000, D = FEATURE_D;
    for (int l = 0; l < 3; l++) {
        int64_t k = py_int((double)D * (1.0 - feature_levels[l])), z = py_int((double)D * feature_levels[l]);
        float *a = randn(c->seed, 5, (uint32_t)l, 0, n, k);
        double lu = lu_of(a, n, k, c->lu_rows, 2.0); /* zero columns change no distance */
        for (int64_t m = 0; m <= FEATURE_M; m++) {
            int64_t d = k + z + m * D;
            float *x = pad_columns(a, n, k, d);
            double row[] = {feature_levels[l], (double)m, (double)d, w2_of(x, n, d), lu};
            table_add(t, row);
            free(x);
        }
        free(a);
    }
    t->title = "feature baby [B, 0, ..., 0]: EmpiricalStudy/FeatureBabyConstraint/AnalysisOnProperty5.py";
    snprintf(t->note, sizeof t->note, "N = %lld (official 50000), D = 32, m blocks of 32 zero "
             "columns appended.", (long long)n);
    lu_note(t, c, n);
}

/* EmpiricalStudy/InstanceCloningConstraint/AnalysisOnProperty3.py: level 0.5, D = 32, N = 1000;
 * A_cat = A stacked m + 1 times (rows), normalised. W2 (biased covariance) is invariant; L_U
 * is not (the zero-distance pairs of copies enter the mean). */
static void study_instance_cloning(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"eta", "m", "rows", "w2", "lu"};
    table_init(t, "instance-cloning", 5, cols);
    t->x_col = 1;
    int64_t n = c->quick ? 200 : 1000, D = FEATURE_D;
    double eta = 0.50;
    int64_t k = py_int((double)D * (1.0 - eta)), z = py_int((double)D * eta);
    float *a = randn(c->seed, 6, 0, 0, n, k);
    for (int64_t m = 0; m <= 10; m++) {
        int64_t rows = (m + 1) * n;
        float *ak = alloc_floats(rows * k);
        for (int64_t r = 0; r <= m; r++) memcpy(ak + r * n * k, a, (size_t)(n * k) * sizeof *a);
        float *x = pad_columns(ak, rows, k, k + z);
        /* L_U on all rows: truncating would drop whole copies and change the property */
        double row[] = {eta, (double)m, (double)rows, w2_of(x, rows, k + z), lu_of(ak, rows, k, 0, 2.0)};
        table_add(t, row);
        free(ak);
        free(x);
    }
    free(a);
    t->title = "instance cloning (rows repeated m+1 times): EmpiricalStudy/InstanceCloningConstraint/AnalysisOnProperty3.py";
    snprintf(t->note, sizeof t->note, "N = %lld (official 1000), D = 32, eta = 0.5; L_U on all rows.",
             (long long)n);
}

/* LargeMeans/PlotMean2D.py: N = 300, A = randn(N, 2) + mean * ones(N, 2), normalised, for mean
 * in [0, 0.5, 1, 2, 4, 8, 16, 32] (the script only scatter-plots them). */
static void study_large_mean(struct table *t, const struct ctx *c)
{
    static const char *cols[] = {"mean", "w2", "lu"};
    table_init(t, "large-mean", 3, cols);
    static const double means[] = {0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0};
    int64_t n = 300;
    for (int i = 0; i < 8; i++) {
        float *a = randn(c->seed, 7, (uint32_t)i, 0, n, 2);
        for (int64_t j = 0; j < 2 * n; j++) a[j] = (float)((double)a[j] + means[i]);
        double row[] = {means[i], w2_of(a, n, 2), lu_of(a, n, 2, 0, 2.0)};
        table_add(t, row);
        free(a);
    }
    t->title = "large mean (2-D, randn + mean): LargeMeans/PlotMean2D.py";
    snprintf(t->note, sizeof t->note, "N = 300 (official), D = 2; W2 grows with the mean "
             "(||mu||^2 term) as the points gather at (1, 1)/sqrt(2).");
}

/* ---- output ------------------------------------------------------------------------- */

static void fmt_value(char *buf, size_t size, const char *col, double v)
{
    bool metric = strncmp(col, "w2", 2) == 0 || strncmp(col, "lu", 2) == 0 || strncmp(col, "tv", 2) == 0;
    snprintf(buf, size, metric ? "%.4f" : "%g", v);
}

static void write_markdown(FILE *f, const struct table *t)
{
    fprintf(f, "### ssltrain study %s\n\n%s\n\n|", t->study, t->title);
    for (int c = 0; c < t->n_cols; c++) fprintf(f, " %s |", t->cols[c]);
    fprintf(f, "\n|");
    for (int c = 0; c < t->n_cols; c++) fprintf(f, "---|");
    fprintf(f, "\n");
    char buf[64];
    for (int64_t r = 0; r < t->n_rows; r++) {
        fprintf(f, "|");
        for (int c = 0; c < t->n_cols; c++) {
            fmt_value(buf, sizeof buf, t->cols[c], t->v[r * t->n_cols + c]);
            fprintf(f, " %s |", buf);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\n%s\n", t->note);
}

static void write_csv(FILE *f, const struct table *t)
{
    for (int c = 0; c < t->n_cols; c++) fprintf(f, c ? ",%s" : "%s", t->cols[c]);
    fprintf(f, "\n");
    for (int64_t r = 0; r < t->n_rows; r++)
        for (int c = 0; c < t->n_cols; c++)
            fprintf(f, "%.10g%s", t->v[r * t->n_cols + c], c + 1 < t->n_cols ? "," : "\n");
}

static double xval(const struct table *t, int64_t r)
{
    double x = t->v[r * t->n_cols + t->x_col];
    return t->log2_x ? log2(x) : x;
}

/* One panel: column ycol against the x column, one line per group (in order of appearance),
 * ref_col (when >= 0) dashed in grey. */
static void plot_panel(cairo_t *cr, double px, double py, double pw, double ph, const struct table *t,
                       int ycol, int ref_col, const char *ylabel)
{
    const double L = 62, R = 12, T = 30, B = 46;
    double x0 = px + L, x1 = px + pw - R, y0 = py + ph - B, y1 = py + T;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int64_t r = 0; r < t->n_rows; r++) {
        xlo = fmin(xlo, xval(t, r));
        xhi = fmax(xhi, xval(t, r));
        double y = t->v[r * t->n_cols + ycol];
        if (isfinite(y)) { ylo = fmin(ylo, y); yhi = fmax(yhi, y); }
        if (ref_col >= 0 && isfinite(t->v[r * t->n_cols + ref_col])) {
            ylo = fmin(ylo, t->v[r * t->n_cols + ref_col]);
            yhi = fmax(yhi, t->v[r * t->n_cols + ref_col]);
        }
    }
    if (!(xhi > xlo)) { xlo -= 0.5; xhi += 0.5; }
    if (!(yhi > ylo)) { ylo -= 0.5; yhi += 0.5; }
    double pad = 0.05 * (yhi - ylo);
    ylo -= pad;
    yhi += pad;
#define SX(x) (x0 + (x1 - x0) * ((x) - xlo) / (xhi - xlo))
#define SY(y) (y0 - (y0 - y1) * ((y) - ylo) / (yhi - ylo))
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, x0, y1, x1 - x0, y0 - y1);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 11);
    char label[96];
    for (int k = 0; k <= 4; k++) {
        double y = ylo + (yhi - ylo) * k / 4.0;
        snprintf(label, sizeof label, "%.3f", y);
        cairo_move_to(cr, px + 6, SY(y) + 4);
        cairo_show_text(cr, label);
        double x = xlo + (xhi - xlo) * k / 4.0;
        snprintf(label, sizeof label, "%.3g", t->log2_x ? exp2(x) : x);
        cairo_move_to(cr, SX(x) - 10, y0 + 16);
        cairo_show_text(cr, label);
    }
    snprintf(label, sizeof label, "%s%s", t->cols[t->x_col], t->log2_x ? " (log2 scale)" : "");
    cairo_move_to(cr, (x0 + x1) / 2 - 30, y0 + 36);
    cairo_show_text(cr, label);
    cairo_set_font_size(cr, 13);
    cairo_move_to(cr, x0, py + 20);
    cairo_show_text(cr, ylabel);
    static const double colours[][3] = {{0.1, 0.3, 0.8}, {0.85, 0.35, 0.1}, {0.1, 0.6, 0.2},
                                        {0.6, 0.1, 0.6}, {0.5, 0.5, 0.1}};
    double groups[16];
    int n_groups = 0;
    for (int64_t r = 0; r < t->n_rows; r++) {
        double g = t->group_col >= 0 ? t->v[r * t->n_cols + t->group_col] : 0.0;
        bool seen = false;
        for (int i = 0; i < n_groups; i++) seen = seen || groups[i] == g;
        if (!seen && n_groups < 16) groups[n_groups++] = g;
    }
    cairo_set_font_size(cr, 11);
    for (int gi = 0; gi < n_groups; gi++) {
        for (int pass = ref_col >= 0 ? 0 : 1; pass < 2; pass++) {
            int col = pass == 0 ? ref_col : ycol;
            const double *rgb = colours[gi % 5];
            if (pass == 0) cairo_set_source_rgb(cr, 0.55, 0.55, 0.55);
            else cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            double dash = 5;
            cairo_set_dash(cr, &dash, pass == 0 ? 1 : 0, 0);
            cairo_set_line_width(cr, 2);
            bool first = true;
            for (int64_t r = 0; r < t->n_rows; r++) {
                double g = t->group_col >= 0 ? t->v[r * t->n_cols + t->group_col] : 0.0;
                double y = t->v[r * t->n_cols + col];
                if (g != groups[gi] || !isfinite(y)) continue;
                if (first) cairo_move_to(cr, SX(xval(t, r)), SY(y));
                else cairo_line_to(cr, SX(xval(t, r)), SY(y));
                first = false;
            }
            cairo_stroke(cr);
            cairo_set_dash(cr, &dash, 0, 0);
            for (int64_t r = 0; pass == 1 && r < t->n_rows; r++) {
                double g = t->group_col >= 0 ? t->v[r * t->n_cols + t->group_col] : 0.0;
                double y = t->v[r * t->n_cols + col];
                if (g != groups[gi] || !isfinite(y)) continue;
                cairo_arc(cr, SX(xval(t, r)), SY(y), 2.5, 0, 6.283185307179586);
                cairo_fill(cr);
            }
        }
        if (t->group_col >= 0) {
            const double *rgb = colours[gi % 5];
            cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
            snprintf(label, sizeof label, "%s = %g", t->cols[t->group_col], groups[gi]);
            cairo_move_to(cr, x1 - 125, y1 + 14 + 13 * gi);
            cairo_show_text(cr, label);
        }
    }
    if (ref_col >= 0) {
        cairo_set_source_rgb(cr, 0.45, 0.45, 0.45);
        snprintf(label, sizeof label, "dashed: %s", t->cols[ref_col]);
        cairo_move_to(cr, x1 - 125, y1 + 14 + 13 * n_groups);
        cairo_show_text(cr, label);
    }
#undef SX
#undef SY
}

static enum ssl_status write_png(const char *path, const struct table *t, struct ssl_error *err)
{
    const int W = 1000, H = 460;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_font_size(cr, 12);
    cairo_move_to(cr, 10, 18);
    cairo_show_text(cr, t->title);
    plot_panel(cr, 0, 24, W / 2.0, H - 24, t, t->w2_col, t->w2_ref_col, "W2 (Wasserstein uniformity; lower = more uniform)");
    plot_panel(cr, W / 2.0, 24, W / 2.0, H - 24, t, t->lu_col, -1, "L_U (Wang & Isola, t = 2; lower = more uniform)");
    cairo_destroy(cr);
    char tmp[4300];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ssl_error_set(err, SSL_E_USAGE, "%s: path too long", path);
    cairo_status_t st = cairo_surface_write_to_png(s, tmp);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS || rename(tmp, path) != 0) {
        remove(tmp);
        return ssl_error_set(err, SSL_E_USAGE, "%s: cannot write the plot (%s)", path, cairo_status_to_string(st));
    }
    return SSL_OK;
}

static enum ssl_status write_text(const char *path, const struct table *t,
                                  void (*fn)(FILE *, const struct table *), struct ssl_error *err)
{
    char tmp[4300];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return ssl_error_set(err, SSL_E_USAGE, "%s: path too long", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: %s", tmp, strerror(errno));
    fn(f, t);
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return ssl_error_set(err, SSL_E_USAGE, "%s: cannot write", path);
    }
    return SSL_OK;
}

/* mkdir -p */
static enum ssl_status make_dirs(const char *dir, struct ssl_error *err)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p)
        return ssl_error_set(err, SSL_E_USAGE, "--out: path too long");
    for (char *s = p + 1; ; s++) {
        if (*s != '/' && *s != '\0') continue;
        char keep = *s;
        *s = '\0';
        if (mkdir(p, 0777) != 0 && errno != EEXIST)
            return ssl_error_set(err, SSL_E_USAGE, "--out: cannot create %s: %s", p, strerror(errno));
        *s = keep;
        if (keep == '\0') break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return ssl_error_set(err, SSL_E_USAGE, "--out: %s is not a directory", dir);
    return SSL_OK;
}

enum ssl_status ssl_cmd_study(const struct ssl_study_args *a, struct ssl_error *err)
{
    static const struct {
        const char *name;
        void (*run)(struct table *, const struct ctx *);
    } studies[] = {
        {"distribution", study_distribution},       {"collapse", study_collapse},
        {"dimension", study_dimension},             {"feature-cloning", study_feature_cloning},
        {"feature-baby", study_feature_baby},       {"instance-cloning", study_instance_cloning},
        {"large-mean", study_large_mean},
    };
    int which = -1;
    for (int i = 0; i < (int)(sizeof studies / sizeof studies[0]); i++)
        if (strcmp(a->study, studies[i].name) == 0) which = i;
    if (which < 0)
        return ssl_error_set(err, SSL_E_USAGE, "study: unknown study '%s' (one of: %s)", a->study,
                             SSL_STUDY_NAMES);
    enum ssl_status rc = make_dirs(a->out_dir, err);
    if (rc) return rc;
    struct ctx c = {.seed = a->seed, .quick = a->quick,
                    .lu_rows = a->lu_rows >= 0 ? a->lu_rows : (a->quick ? 0 : 5000)};
    struct table t;
    studies[which].run(&t, &c);
    write_markdown(stdout, &t);
    fflush(stdout);
    char path[4200];
    snprintf(path, sizeof path, "%s/%s.csv", a->out_dir, t.study);
    rc = write_text(path, &t, write_csv, err);
    if (!rc) {
        snprintf(path, sizeof path, "%s/%s.md", a->out_dir, t.study);
        rc = write_text(path, &t, write_markdown, err);
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/%s.png", a->out_dir, t.study);
        rc = write_png(path, &t, err);
    }
    free(t.v);
    return rc;
}
