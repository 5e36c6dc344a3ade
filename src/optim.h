/* optim.h: optimizers over the flat parameter buffer, learning-rate schedule, EMA target.
 *
 * Semantics follow PyTorch and the official SSL recipes:
 *  - SGD: buf = momentum*buf + (g + wd*p) (buf = g + wd*p on the first step), p -= lr*buf.
 *  - LARS (VICReg / Barlow Twins code): for conv/linear weights, g += wd*p, then the update is
 *    scaled by trust = eta*||p||/||g|| (1 when either norm is 0); with lars_clip (solo-learn's
 *    LARS, after apex LARC) trust = min(trust/lr, 1), i.e. the step is min(eta||p||/||g||, lr);
 *    biases and BN parameters get neither decay nor adaptation; then momentum as SGD.
 *  - AdamW: decoupled decay p -= lr*wd*p, bias-corrected moments (PyTorch defaults).
 * Parameter groups (params.h) have their own learning rate (SimSiam's fixed predictor LR).
 * State (momentum, moments) is one buffer with the parameters' layout. */
#ifndef SSL_OPTIM_H
#define SSL_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "params.h"
#include "real.h"

enum ssl_optim_kind { SSL_OPTIM_SGD, SSL_OPTIM_LARS, SSL_OPTIM_ADAMW };

struct ssl_optim_cfg {
    enum ssl_optim_kind kind;
    double momentum;      /* SGD, LARS */
    double weight_decay;
    double lars_eta;      /* LARS trust coefficient */
    bool lars_clip;       /* LARS: clip the adaptive rate */
    double beta1, beta2, adam_eps; /* AdamW */
};

struct ssl_optim {
    struct ssl_optim_cfg cfg;
    int64_t n_steps;   /* steps taken: a checkpointed position */
    int64_t n_state;   /* elements of state */
    ssl_real *state;   /* SGD/LARS: (n_params) momentum; AdamW: (2, n_params) m then v */
};

int ssl_optim_init(struct ssl_optim *o, const struct ssl_optim_cfg *cfg,
                   const struct ssl_params *p);
void ssl_optim_free(struct ssl_optim *o);
/* One update of every trainable entry with lr[group]; reads p->grads, writes p->params. */
void ssl_optim_step(struct ssl_optim *o, struct ssl_params *p, const double lr[SSL_GROUP_COUNT]);

/* Linear warmup from warmup_start*base_lr to base_lr over warmup_steps, then cosine from
 * base_lr to final_lr at total_steps (constant at final_lr after). */
struct ssl_schedule {
    double base_lr, final_lr, warmup_start;
    int64_t warmup_steps, total_steps;
    bool cosine; /* false: constant base_lr after warmup */
    double predictor_lr; /* >= 0: fixed LR of the predictor group (SimSiam); < 0: scheduled */
};
double ssl_schedule_lr(const struct ssl_schedule *s, int64_t step);
/* Learning rate of every parameter group at `step`. */
void ssl_schedule_group_lrs(const struct ssl_schedule *s, int64_t step, double lr[SSL_GROUP_COUNT]);

/* BYOL/MoCo target networks: tau(step) = 1 - (1 - base)*(cos(pi*step/total) + 1)/2, and
 * target = tau*target + (1 - tau)*online over n elements. */
double ssl_ema_tau(double base, int64_t step, int64_t total_steps);
void ssl_ema_update(ssl_real *target, const ssl_real *online, int64_t n_elems, double tau);

#endif
