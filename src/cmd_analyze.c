/* cmd_analyze.c: metrics of /z (and alignment of /z1, /z2 when present) as text or JSON, and
 * the eigenvalue spectrum plot (log eigenvalue against index: the dimensional-collapse
 * picture) drawn with cairo. */
#include "cmd_analyze.h"

#include <cairo.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5_matrix.h"
#include "metrics.h"

struct analysis {
    int64_t n, d;
    struct ssl_metrics m;
    bool has_pair;
    double alignment;
    double *spectrum; /* (min(n, d)), descending */
};

/* A (rows, cols) dataset as floats, the type the program's metrics take. */
static enum ssl_status read_floats(const char *path, const char *name, float **z, int64_t *n,
                                   int64_t *d, struct ssl_error *err)
{
    double *raw = NULL;
    enum ssl_status rc = ssl_h5_read_matrix(path, name, &raw, n, d, err);
    if (rc) return rc;
    *z = malloc((size_t)(*n * *d) * sizeof **z);
    if (*z == NULL) rc = ssl_error_set(err, SSL_E_OTHER, "%s: out of memory", path);
    for (int64_t i = 0; !rc && i < *n * *d; i++) (*z)[i] = (float)raw[i];
    free(raw);
    return rc;
}

static enum ssl_status pair_alignment(const struct ssl_analyze_args *a, struct analysis *r,
                                      struct ssl_error *err)
{
    if (!ssl_h5_has(a->path, "/z1") || !ssl_h5_has(a->path, "/z2")) return SSL_OK;
    float *z1 = NULL, *z2 = NULL;
    int64_t n1, d1, n2, d2;
    enum ssl_status rc = read_floats(a->path, "/z1", &z1, &n1, &d1, err);
    if (!rc) rc = read_floats(a->path, "/z2", &z2, &n2, &d2, err);
    if (!rc && (n1 != n2 || d1 != d2))
        rc = ssl_error_set(err, SSL_E_DATA, "%s: /z1 is %lldx%lld but /z2 is %lldx%lld", a->path,
                           (long long)n1, (long long)d1, (long long)n2, (long long)d2);
    if (!rc) {
        r->has_pair = true;
        r->alignment = ssl_metric_alignment(z1, z2, n1, d1, 2.0);
    }
    free(z1);
    free(z2);
    return rc;
}

static enum ssl_status analyse(const struct ssl_analyze_args *a, struct analysis *r, struct ssl_error *err)
{
    float *z = NULL;
    enum ssl_status rc = read_floats(a->path, a->dataset, &z, &r->n, &r->d, err);
    if (!rc && r->n < 2) rc = ssl_error_set(err, SSL_E_DATA, "%s: %s has %lld rows; metrics need 2",
                                            a->path, a->dataset, (long long)r->n);
    double *work = NULL;
    if (!rc) {
        work = malloc((size_t)ssl_metrics_work_elems(r->n, r->d) * sizeof *work);
        r->spectrum = malloc((size_t)(r->n < r->d ? r->n : r->d) * sizeof *r->spectrum);
        if (!work || !r->spectrum) rc = ssl_error_set(err, SSL_E_OTHER, "out of memory");
    }
    if (!rc && (ssl_metrics_compute(&r->m, z, r->n, r->d, work) ||
                ssl_metric_spectrum(r->spectrum, z, r->n, r->d, true, work)))
        rc = ssl_error_set(err, SSL_E_DATA, "%s: %s: the eigensolver failed", a->path, a->dataset);
    if (!rc) rc = pair_alignment(a, r, err);
    free(work);
    free(z);
    return rc;
}

/* Name, value pairs in a fixed order: the text and JSON outputs list the same things. */
static int metric_list(const struct analysis *r, const char **names, double *values)
{
    const struct ssl_metrics *m = &r->m;
    const char *n[] = {"w2", "uniformity", "rank", "rank_raw", "rank_tol0.1", "stable_rank",
                       "stable_rank_sv", "effective_rank", "effective_rank_cov", "rankme", "z_std_mean"};
    double v[] = {m->w2, m->uniformity, m->rank, m->rank_raw, m->rank_tol01, m->stable_rank,
                  m->stable_rank_sv, m->effective_rank, m->effective_rank_cov, m->rankme, m->z_std_mean};
    int k = (int)(sizeof v / sizeof v[0]);
    memcpy(names, n, sizeof n);
    memcpy(values, v, sizeof v);
    if (r->has_pair) {
        names[k] = "alignment";
        values[k++] = r->alignment;
    }
    return k;
}

static void print_text(const struct ssl_analyze_args *a, const struct analysis *r)
{
    const char *names[16];
    double values[16];
    int k = metric_list(r, names, values);
    printf("%s %s: %lld x %lld\n", a->path, a->dataset, (long long)r->n, (long long)r->d);
    for (int i = 0; i < k; i++) printf("  %-20s %.6g\n", names[i], values[i]);
}

static void print_json(const struct ssl_analyze_args *a, const struct analysis *r)
{
    const char *names[16];
    double values[16];
    int k = metric_list(r, names, values);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", a->path);
    cJSON_AddStringToObject(o, "dataset", a->dataset);
    cJSON_AddNumberToObject(o, "n", (double)r->n);
    cJSON_AddNumberToObject(o, "d", (double)r->d);
    for (int i = 0; i < k; i++) cJSON_AddNumberToObject(o, names[i], values[i]);
    int64_t m = r->n < r->d ? r->n : r->d;
    cJSON_AddItemToObject(o, "spectrum", cJSON_CreateDoubleArray(r->spectrum, (int)m));
    char *text = cJSON_PrintUnformatted(o);
    puts(text);
    free(text);
    cJSON_Delete(o);
}

static enum ssl_status plot_spectrum(const char *out, const struct analysis *r, const char *title,
                                     struct ssl_error *err)
{
    const int W = 720, H = 440, L = 70, R = 20, T = 40, B = 50;
    int64_t m = r->n < r->d ? r->n : r->d;
    double lo = INFINITY, hi = -INFINITY, floor_v = r->spectrum[0] * 1e-12;
    for (int64_t i = 0; i < m; i++) {
        double v = log10(fmax(r->spectrum[i], floor_v > 0 ? floor_v : 1e-300));
        lo = fmin(lo, v);
        hi = fmax(hi, v);
    }
    if (!(hi > lo)) hi = lo + 1;
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, H);
    cairo_t *cr = cairo_create(s);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, L, T, W - L - R, H - T - B);
    cairo_stroke(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 12);
    char label[128];
    for (int t = 0; t <= 4; t++) { /* y ticks: log10 of the eigenvalue */
        double v = lo + (hi - lo) * t / 4, y = H - B - (H - T - B) * t / 4.0;
        snprintf(label, sizeof label, "1e%.1f", v);
        cairo_move_to(cr, 8, y + 4);
        cairo_show_text(cr, label);
    }
    snprintf(label, sizeof label, "index k (1..%lld)", (long long)m);
    cairo_move_to(cr, W / 2.0 - 50, H - 15);
    cairo_show_text(cr, label);
    cairo_move_to(cr, L, 25);
    cairo_show_text(cr, title);
    cairo_set_source_rgb(cr, 0.1, 0.3, 0.8);
    cairo_set_line_width(cr, 2);
    for (int64_t i = 0; i < m; i++) {
        double v = log10(fmax(r->spectrum[i], floor_v > 0 ? floor_v : 1e-300));
        double x = L + (W - L - R) * (m > 1 ? (double)i / (double)(m - 1) : 0.5);
        double y = H - B - (H - T - B) * (v - lo) / (hi - lo);
        if (i == 0) cairo_move_to(cr, x, y);
        else cairo_line_to(cr, x, y);
    }
    cairo_stroke(cr);
    cairo_destroy(cr);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    cairo_status_t st = cairo_surface_write_to_png(s, tmp);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS || rename(tmp, out) != 0) {
        remove(tmp);
        return ssl_error_set(err, SSL_E_USAGE, "%s: cannot write the plot (%s)", out, cairo_status_to_string(st));
    }
    return SSL_OK;
}

enum ssl_status ssl_cmd_analyze(const struct ssl_analyze_args *a, struct ssl_error *err)
{
    struct analysis r = {0};
    enum ssl_status rc = analyse(a, &r, err);
    if (!rc) {
        if (a->json) print_json(a, &r);
        else print_text(a, &r);
    }
    if (!rc && a->plot) {
        char title[600];
        snprintf(title, sizeof title, "eigenvalues of the covariance of %s:%s (%lld x %lld)", a->path,
                 a->dataset, (long long)r.n, (long long)r.d);
        rc = plot_spectrum(a->plot, &r, title, err);
    }
    free(r.spectrum);
    return rc;
}
