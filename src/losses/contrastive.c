/* contrastive.c: contrastive losses. SimCLR's NT-Xent (Chen et al. 2020) as the peer and the
 * official code compute it: u = normalize([a; b]) (2n, d), S = u u^T / t with the diagonal
 * excluded, L = mean_i CE(S_i, partner(i)), partner(i) = i + n mod 2n.
 * dL/dS = (softmax(S) - onehot(partner)) / 2n, dL/du = (G + G^T) u / t, then through the
 * normalisation: du -> (du - u (u.du)) / ||x||. */
#include "losses.h"

#include <math.h>

#include <cblas.h>

#include "../check.h"

int64_t ssl_simclr_work_elems(int64_t n, int64_t d) { return 4 * n * d + 4 * n * n + 2 * n; }

double ssl_simclr_loss(ssl_real *da, ssl_real *db, const ssl_real *a, const ssl_real *b, int64_t n,
                       int64_t d, double temperature, double *work)
{
    int64_t m = 2 * n;
    double *u = work, *du = work + m * d, *S = work + 2 * m * d, *norm = S + m * m;
    for (int64_t i = 0; i < m; i++) {
        const ssl_real *x = i < n ? a + i * d : b + (i - n) * d;
        double s = 0;
        for (int64_t k = 0; k < d; k++) s += (double)x[k] * (double)x[k];
        norm[i] = fmax(sqrt(s), 1e-12);
        for (int64_t k = 0; k < d; k++) u[i * d + k] = (double)x[k] / norm[i];
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ssl_int(m), ssl_int(m), ssl_int(d),
                1.0 / temperature, u, ssl_int(d), u, ssl_int(d), 0.0, S, ssl_int(m));
    double loss = 0;
    for (int64_t i = 0; i < m; i++) {
        double *row = S + i * m, mx = -INFINITY, z = 0;
        int64_t partner = (i + n) % m;
        for (int64_t j = 0; j < m; j++)
            if (j != i && row[j] > mx) mx = row[j];
        for (int64_t j = 0; j < m; j++) z += j == i ? 0 : exp(row[j] - mx);
        loss += mx + log(z) - row[partner];
        /* row becomes dL/dS_i */
        for (int64_t j = 0; j < m; j++) row[j] = j == i ? 0 : exp(row[j] - mx) / z;
        row[partner] -= 1;
        for (int64_t j = 0; j < m; j++) row[j] /= (double)m;
    }
    if (da == NULL && db == NULL) return loss / (double)m;
    /* du = (G + G^T) u / t */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ssl_int(m), ssl_int(d), ssl_int(m),
                1.0 / temperature, S, ssl_int(m), u, ssl_int(d), 0.0, du, ssl_int(d));
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ssl_int(m), ssl_int(d), ssl_int(m),
                1.0 / temperature, S, ssl_int(m), u, ssl_int(d), 1.0, du, ssl_int(d));
    for (int64_t i = 0; i < m; i++) {
        ssl_real *dx = i < n ? da : db;
        if (dx == NULL) continue;
        dx += (i < n ? i : i - n) * d;
        double dot = 0;
        for (int64_t k = 0; k < d; k++) dot += u[i * d + k] * du[i * d + k];
        for (int64_t k = 0; k < d; k++)
            dx[k] += (ssl_real)((du[i * d + k] - u[i * d + k] * dot) / norm[i]);
    }
    return loss / (double)m;
}
