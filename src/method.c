/* method.c: method.name and the loss.* keys into struct ssl_method, with the checks that the
 * model and the views fit the method. */
#include "method.h"

#include <string.h>

static const char *const NAMES[SSL_METHOD_COUNT] = {
    "simclr", "moco", "byol", "simsiam", "swav", "barlow", "vicreg",
    "zero_cl", "wmse", "sdbn", "cwrgp", "rdm"};

const char *ssl_method_name(enum ssl_method_kind kind)
{
    return kind >= 0 && kind < SSL_METHOD_COUNT ? NAMES[kind] : "?";
}

static bool is_pair_method(enum ssl_method_kind k)
{
    return k != SSL_METHOD_SWAV && k != SSL_METHOD_WMSE && k != SSL_METHOD_CWRGP &&
           k != SSL_METHOD_SDBN;
}

/* loss.whitening.* overrides (-1: the method's official default). */
static void whitening_overrides(struct ssl_whitening_opts *o, const struct ssl_config *cfg)
{
    int64_t w_size = ssl_config_int(cfg, "loss.whitening.w_size");
    int64_t w_iter = ssl_config_int(cfg, "loss.whitening.w_iter");
    int64_t groups = ssl_config_int(cfg, "loss.whitening.groups");
    double eps = ssl_config_float(cfg, "loss.whitening.eps");
    if (w_size >= 0) o->w_size = w_size;
    if (w_iter > 0) o->w_iter = w_iter;
    if (groups > 0) o->n_groups = groups;
    if (eps >= 0) o->eps = eps;
    o->per_rank = ssl_config_bool(cfg, "loss.per_rank");
}

static void read_loss_options(struct ssl_method *m, const struct ssl_config *cfg)
{
    m->simclr = ssl_simclr_defaults();
    m->simclr.temperature = ssl_config_float(cfg, "loss.simclr.temperature");
    m->moco = ssl_moco_defaults();
    m->moco.temperature = ssl_config_float(cfg, "loss.moco.temperature");
    m->byol = ssl_byol_defaults();
    m->simsiam = ssl_simsiam_defaults();
    m->swav = ssl_swav_defaults();
    m->swav.temperature = ssl_config_float(cfg, "loss.swav.temperature");
    m->swav.epsilon = ssl_config_float(cfg, "loss.swav.epsilon");
    m->swav.sinkhorn_iterations = (int)ssl_config_int(cfg, "loss.swav.iterations");
    m->barlow = ssl_barlow_defaults();
    m->barlow.lambd = ssl_config_float(cfg, "loss.barlow.lambda");
    m->vicreg = ssl_vicreg_defaults();
    m->vicreg.sim = ssl_config_float(cfg, "loss.vicreg.sim");
    m->vicreg.std = ssl_config_float(cfg, "loss.vicreg.std");
    m->vicreg.cov = ssl_config_float(cfg, "loss.vicreg.cov");
    bool icl = strcmp(ssl_config_str(cfg, "loss.zero_cl.mode"), "icl") == 0;
    m->zerocl = ssl_zerocl_defaults(icl ? SSL_ZEROCL_ICL : SSL_ZEROCL_FCL);
    m->zerocl.per_rank = m->per_rank;
    m->whitening = m->kind == SSL_METHOD_CWRGP  ? ssl_cwrgp_defaults()
                   : m->kind == SSL_METHOD_SDBN ? ssl_sdbn_defaults()
                                                : ssl_wmse_defaults();
    if (m->kind == SSL_METHOD_SDBN) m->whitening.kind = SSL_WHITEN_NONE; /* the model whitens */
    const char *kind = ssl_config_str(cfg, "loss.whitening.kind");
    if (m->kind == SSL_METHOD_WMSE && strcmp(kind, "default") != 0) {
        /* the whitening-loss comparison: the same loss with another transform */
        for (int k = SSL_WHITEN_NONE; k <= SSL_WHITEN_PCA; k++)
            if (strcmp(kind, ssl_whiten_kind_name((enum ssl_whiten_kind)k)) == 0)
                m->whitening = ssl_whitening_compare_defaults((enum ssl_whiten_kind)k);
    }
    whitening_overrides(&m->whitening, cfg);
    m->rdm = ssl_rdm_defaults();
    m->rdm.base = strcmp(ssl_config_str(cfg, "loss.rdm.base"), "byol") == 0 ? SSL_RDM_BASE_BYOL
                                                                            : SSL_RDM_BASE_SIMSIAM;
    m->w2 = ssl_w2_defaults();
    m->w2.cov_eps = ssl_config_float(cfg, "loss.w2.cov_eps");
    m->unif = ssl_uniformity_defaults();
    m->unif.t = ssl_config_float(cfg, "loss.uniformity.t");
    m->align = ssl_alignment_defaults();
    m->align.alpha = ssl_config_float(cfg, "loss.alignment.alpha");
    m->w2_weight = ssl_config_float(cfg, "loss.w2.weight");
    m->w2_final = ssl_config_float(cfg, "loss.w2.weight_final");
    m->unif_weight = ssl_config_float(cfg, "loss.uniformity.weight");
    m->unif_final = ssl_config_float(cfg, "loss.uniformity.weight_final");
    m->align_weight = ssl_config_float(cfg, "loss.alignment.weight");
}

/* The combinations that cannot work, each named by the key to change. */
static enum ssl_status check_fit(const struct ssl_method *m, const struct ssl_config *cfg,
                                 struct ssl_error *err)
{
    const char *name = ssl_method_name(m->kind);
    if (is_pair_method(m->kind) && m->n_views != 2)
        return ssl_error_set(err, SSL_E_USAGE, "aug.views=%d: method %s uses 2 views", m->n_views,
                             name);
    int64_t pred_widths = ssl_config_list_length(cfg, "model.predictor.hidden");
    if (m->needs_predictor && pred_widths == 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "model.predictor.hidden is empty: method %s needs a predictor "
                             "(BYOL 4096, SimSiam 512)", name);
    if (!m->needs_predictor && pred_widths > 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "model.predictor.hidden is set but method %s has no predictor", name);
    bool whitened = ssl_config_int(cfg, "model.projector.whiten_groups") > 0;
    if ((m->kind == SSL_METHOD_SDBN) != whitened)
        return ssl_error_set(err, SSL_E_USAGE,
                             "model.projector.whiten_groups=%lld: %s",
                             (long long)ssl_config_int(cfg, "model.projector.whiten_groups"),
                             whitened ? "only method sdbn whitens in the model"
                                      : "method sdbn needs the whitening layer (official 16)");
    int64_t batch = ssl_config_int(cfg, "data.batch");
    if (m->kind == SSL_METHOD_MOCO && m->queue_len % (2 * batch) != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "loss.moco.queue=%lld is not a multiple of 2 x data.batch=%lld (both "
                             "views' keys are queued each step)",
                             (long long)m->queue_len, (long long)batch);
    return SSL_OK;
}

enum ssl_status ssl_method_from_config(struct ssl_method *m, const struct ssl_config *cfg,
                                       struct ssl_error *err)
{
    memset(m, 0, sizeof *m);
    const char *name = ssl_config_str(cfg, "method.name");
    int kind = -1;
    for (int k = 0; k < SSL_METHOD_COUNT; k++)
        if (strcmp(name, NAMES[k]) == 0) kind = k;
    if (kind < 0) return ssl_error_set(err, SSL_E_USAGE, "method.name: unknown method '%s'", name);
    m->kind = (enum ssl_method_kind)kind;
    m->n_views = (int)ssl_config_int(cfg, "aug.views");
    m->per_rank = ssl_config_bool(cfg, "loss.per_rank");
    m->needs_predictor = m->kind == SSL_METHOD_BYOL || m->kind == SSL_METHOD_SIMSIAM ||
                         m->kind == SSL_METHOD_RDM;
    m->ema_base = ssl_config_float(cfg, "ema.base");
    m->queue_len = ssl_config_int(cfg, "loss.moco.queue");
    m->prototypes = ssl_config_int(cfg, "loss.swav.prototypes");
    read_loss_options(m, cfg);
    m->needs_target = m->kind == SSL_METHOD_BYOL || m->kind == SSL_METHOD_MOCO ||
                      (m->kind == SSL_METHOD_RDM && m->rdm.base == SSL_RDM_BASE_BYOL);
    return check_fit(m, cfg, err);
}

void ssl_method_aux_weights(const struct ssl_method *m, int64_t epoch, int64_t epochs,
                            double *w2, double *unif, double *align)
{
    /* ssl_uniformity_weight counts epochs from 1, as the W2 paper's code */
    *w2 = m->w2_final < 0 ? m->w2_weight
                          : ssl_uniformity_weight(m->w2_weight, m->w2_final, epoch + 1, epochs);
    *unif = m->unif_final < 0
                ? m->unif_weight
                : ssl_uniformity_weight(m->unif_weight, m->unif_final, epoch + 1, epochs);
    *align = m->align_weight;
}
