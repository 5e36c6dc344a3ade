/* method.h: the SSL methods as configurations of one engine (docs/METHODS.md).
 *
 * A method is: which network branches it needs (a predictor, an EMA target network), its
 * main loss with the options read from the loss.* keys, the views it consumes, its state
 * (MoCo's queue, SwAV's prototypes) and the auxiliary uniformity terms any method can add
 * (loss.w2.weight, loss.uniformity.weight, loss.alignment.weight). ssl_method_from_config
 * reads method.name and the keys, and checks the combination with the model and the views
 * (a BYOL without a predictor, SimCLR with 4 views ...) with one-line errors naming the key. */
#ifndef SSL_METHOD_H
#define SSL_METHOD_H

#include <stdbool.h>
#include <stdint.h>

#include "check.h"
#include "config.h"
#include "losses/contrastive.h"
#include "losses/predictive.h"
#include "losses/redundancy.h"
#include "losses/uniformity.h"
#include "losses/whitening.h"

enum ssl_method_kind {
    SSL_METHOD_SIMCLR,
    SSL_METHOD_MOCO,
    SSL_METHOD_BYOL,
    SSL_METHOD_SIMSIAM,
    SSL_METHOD_SWAV,
    SSL_METHOD_BARLOW,
    SSL_METHOD_VICREG,
    SSL_METHOD_ZERO_CL,
    SSL_METHOD_WMSE,
    SSL_METHOD_SDBN,
    SSL_METHOD_CWRGP,
    SSL_METHOD_RDM,
    SSL_METHOD_COUNT
};

struct ssl_method {
    enum ssl_method_kind kind;
    int n_views;          /* aug.views; the pair losses use views 0 and 1 */
    bool needs_predictor; /* BYOL, SimSiam, RDM */
    bool needs_target;    /* an EMA copy of backbone + projector: BYOL, MoCo, RDM on BYOL */
    double ema_base;      /* ema.base: tau at step 0 (cosine to 1) */
    int64_t queue_len;    /* MoCo: keys kept (a multiple of 2 x the global batch) */
    int64_t prototypes;   /* SwAV: K */
    bool per_rank;        /* loss.per_rank: the whitening losses' official per-rank statistics */

    struct ssl_simclr_opts simclr;
    struct ssl_moco_opts moco;
    struct ssl_byol_opts byol;
    struct ssl_simsiam_opts simsiam;
    struct ssl_swav_opts swav;
    struct ssl_barlow_opts barlow;
    struct ssl_vicreg_opts vicreg;
    struct ssl_zerocl_opts zerocl;
    struct ssl_whitening_opts whitening; /* W-MSE, Shuffled-DBN, CW-RGP */
    struct ssl_rdm_opts rdm;

    /* auxiliary terms on the projections of views 0 and 1; weights decay linearly from
     * *_weight to *_final over the epochs (final < 0: constant) */
    double w2_weight, w2_final, unif_weight, unif_final, align_weight;
    struct ssl_w2_opts w2;
    struct ssl_uniformity_opts unif;
    struct ssl_alignment_opts align;
};

const char *ssl_method_name(enum ssl_method_kind kind);

/* Reads method.name and the loss.* / ema.* / aug.views keys, and checks them against the
 * model's keys (model.predictor.hidden, model.projector.whiten_groups) and the global batch.
 * SSL_E_USAGE with a message naming the key on a combination that cannot work. */
enum ssl_status ssl_method_from_config(struct ssl_method *m, const struct ssl_config *cfg,
                                       struct ssl_error *err);

/* The weights of the auxiliary terms at a 0-based epoch of `epochs`. */
void ssl_method_aux_weights(const struct ssl_method *m, int64_t epoch, int64_t epochs,
                            double *w2, double *unif, double *align);

#endif
