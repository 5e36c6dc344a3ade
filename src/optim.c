/* optim.c: SGD with momentum, LARS and AdamW over the flat parameter buffer; the warmup +
 * cosine learning-rate schedule; the EMA of target networks.
 *
 * Invariants: the state has the parameters' layout (AdamW: m then v, each n_params long) and
 * is zero at init; ssl_optim_step allocates nothing, touches only trainable entries of
 * p->params (never p->grads, BN running statistics or counters) and uses lr[entry group].
 * Element-wise arithmetic is in ssl_real with ssl_real coefficients, as PyTorch does for a
 * tensor of that dtype; norms and scalar factors are in double.
 *
 * Semantics, and the sources they were read from (the code here is written from the
 * formulas, nothing is copied):
 *  - SGD: torch.optim.SGD, dampening 0, nesterov off (torch 1.13 torch/optim/sgd.py,
 *    _single_tensor_sgd). g' = g + wd*p; buf = g' on the first step, else
 *    buf = momentum*buf + g'; p -= lr*buf. Weight decay applies to EVERY trainable entry,
 *    biases and BN affine parameters included: that is torch with one parameter group, the
 *    default of solo-learn (optimizer.exclude_bias_n_norm_wd = False) and what the PyTorch
 *    peer bench/torch_peer.py runs (torch.optim.SGD(net.parameters(), weight_decay=1e-4)).
 *  - LARS: class LARS of facebookresearch/barlowtwins main.py and facebookresearch/vicreg
 *    main_vicreg.py, with weight_decay_filter = lars_adaptation_filter =
 *    exclude_bias_and_norm (p.ndim == 1, here kind != SSL_PK_WEIGHT). Biases and BN
 *    parameters: g' = g, no decay, no adaptation. Weights: g' = g + wd*p,
 *    q = eta*||p||/||g'|| when both norms are > 0 else 1, g' *= q. Then for all:
 *    mu = momentum*mu + g' (mu starts at zero, so the first step equals SGD's buf = g');
 *    p -= lr*mu.
 *  - LARS clip: the clip of vturrisi/solo-learn solo/utils/lars.py (itself from Lightning
 *    Bolts pl_bolts/optimizers/lars.py, after NVIDIA apex LARC): q = min(q/lr, 1), lr being the
 *    entry's current group rate, so that the effective rate lr*q is min(eta*||p||/||g'||, lr):
 *    the layer-wise rate may lower the global rate but never raise it. Note the change of
 *    scale: clipped, eta*||p||/||g'|| is an absolute rate (capped at lr); unclipped, it
 *    multiplies lr, so the same eta gives very different steps. Only the clip is taken
 *    from solo-learn; the trust ratio stays the Facebook one (solo-learn divides by
 *    ||g|| + wd*||p|| + eps instead of ||g + wd*p||). With lr = 0 solo-learn's q/lr is +inf and
 *    q becomes 1; here too, without dividing by zero.
 *  - AdamW: torch.optim.AdamW, amsgrad off (torch 1.13 torch/optim/adamw.py,
 *    _single_tensor_adamw).
 *    t = n_steps + 1; p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 *    p -= (lr/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Like torch with one parameter
 *    group, the decoupled decay applies to every trainable entry, biases and BN included. */
#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "check.h"

/* M_PI is not in strict C17. */
static const double ssl_pi = 3.14159265358979323846;

/* sqrt at the core's precision, so the float core does not round-trip through double. */
static inline ssl_real sqrt_real(ssl_real x)
{
#ifdef SSL_F64
    return sqrt(x);
#else
    return sqrtf(x);
#endif
}

/* The current learning rate of an entry's group. */
static double entry_lr(const struct ssl_param *e, const double lr[SSL_GROUP_COUNT])
{
    SSL_ASSERT(e->group >= 0 && e->group < SSL_GROUP_COUNT);
    return lr[e->group];
}

int ssl_optim_init(struct ssl_optim *o, const struct ssl_optim_cfg *cfg,
                   const struct ssl_params *p)
{
    SSL_CHECK(cfg->kind == SSL_OPTIM_SGD || cfg->kind == SSL_OPTIM_LARS ||
              cfg->kind == SSL_OPTIM_ADAMW);
    o->cfg = *cfg;
    o->n_steps = 0;
    o->n_state = (cfg->kind == SSL_OPTIM_ADAMW ? 2 : 1) * p->n_params;
    /* Zero state is the "no step yet" value of every optimizer; calloc(0) may return NULL. */
    o->state = calloc(o->n_state > 0 ? (size_t)o->n_state : 1, sizeof *o->state);
    return o->state == NULL ? -1 : 0;
}

void ssl_optim_free(struct ssl_optim *o)
{
    free(o->state);
    o->state = NULL;
    o->n_state = 0;
}

/* torch SGD on one entry (n elements): buf (n) is the momentum buffer. */
static void sgd_entry(ssl_real *param, const ssl_real *grad, ssl_real *buf, int64_t n,
                      double lr, const struct ssl_optim_cfg *cfg, bool first_step)
{
    const ssl_real wd = (ssl_real)cfg->weight_decay;
    const ssl_real mom = (ssl_real)cfg->momentum;
    const ssl_real rate = (ssl_real)lr;
    for (int64_t i = 0; i < n; i++) {
        ssl_real g = grad[i] + wd * param[i];
        buf[i] = first_step ? g : mom * buf[i] + g;
        param[i] -= rate * buf[i];
    }
}

/* The LARS trust ratio of a weight: eta*||p||/||g + wd*p|| (1 if either norm is 0), clipped
 * to min(q/lr, 1) when asked. Norms are accumulated in double. */
static double lars_trust(const ssl_real *param, const ssl_real *grad, int64_t n, double lr,
                         const struct ssl_optim_cfg *cfg)
{
    const ssl_real wd = (ssl_real)cfg->weight_decay;
    double pp = 0.0, gg = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double g = (double)(grad[i] + wd * param[i]);
        pp += (double)param[i] * (double)param[i];
        gg += g * g;
    }
    double q = pp > 0.0 && gg > 0.0 ? cfg->lars_eta * sqrt(pp) / sqrt(gg) : 1.0;
    /* min(q/lr, 1) written so that lr = 0 gives 1, as +inf does in solo-learn. */
    if (cfg->lars_clip) q = q < lr ? q / lr : 1.0;
    return q;
}

/* LARS on one entry: weights are decayed and scaled by the trust ratio, biases and BN
 * parameters are not; then momentum as SGD with a zero-initialised buffer mu (n). */
static void lars_entry(ssl_real *param, const ssl_real *grad, ssl_real *mu, int64_t n,
                       double lr, const struct ssl_optim_cfg *cfg, bool adapt)
{
    const ssl_real wd = adapt ? (ssl_real)cfg->weight_decay : 0;
    const ssl_real q = adapt ? (ssl_real)lars_trust(param, grad, n, lr, cfg) : 1;
    const ssl_real mom = (ssl_real)cfg->momentum;
    const ssl_real rate = (ssl_real)lr;
    for (int64_t i = 0; i < n; i++) {
        ssl_real g = (grad[i] + wd * param[i]) * q;
        mu[i] = mom * mu[i] + g;
        param[i] -= rate * mu[i];
    }
}

/* torch AdamW on one entry at step t >= 1: m (n) and v (n) are the moment estimates. */
static void adamw_entry(ssl_real *param, const ssl_real *grad, ssl_real *m, ssl_real *v,
                        int64_t n, double lr, const struct ssl_optim_cfg *cfg, int64_t t)
{
    const double b1 = cfg->beta1, b2 = cfg->beta2;
    /* Scalars in double as torch computes them in Python, then used at the tensor's dtype. */
    const ssl_real keep = (ssl_real)(1.0 - lr * cfg->weight_decay);
    const ssl_real step_size = (ssl_real)(lr / (1.0 - pow(b1, (double)t)));
    const ssl_real bc2_sqrt = (ssl_real)sqrt(1.0 - pow(b2, (double)t));
    const ssl_real rb1 = (ssl_real)b1, rb2 = (ssl_real)b2;
    const ssl_real cb1 = (ssl_real)(1.0 - b1), cb2 = (ssl_real)(1.0 - b2);
    const ssl_real eps = (ssl_real)cfg->adam_eps;
    for (int64_t i = 0; i < n; i++) {
        param[i] *= keep;
        m[i] = rb1 * m[i] + cb1 * grad[i];
        v[i] = rb2 * v[i] + cb2 * grad[i] * grad[i];
        ssl_real denom = sqrt_real(v[i]) / bc2_sqrt + eps;
        param[i] -= step_size * m[i] / denom;
    }
}

void ssl_optim_step(struct ssl_optim *o, struct ssl_params *p, const double lr[SSL_GROUP_COUNT])
{
    const struct ssl_optim_cfg *cfg = &o->cfg;
    const int64_t n_params = p->n_params;
    SSL_CHECK(o->n_state == (cfg->kind == SSL_OPTIM_ADAMW ? 2 : 1) * n_params);
    for (int k = 0; k < p->n_items; k++) {
        const struct ssl_param *e = &p->items[k];
        if (!ssl_param_trainable(e->kind)) continue;
        ssl_real *param = p->params + e->offset;
        const ssl_real *grad = p->grads + e->offset;
        ssl_real *s = o->state + e->offset;
        double rate = entry_lr(e, lr);
        switch (cfg->kind) {
        case SSL_OPTIM_SGD:
            sgd_entry(param, grad, s, e->n_elems, rate, cfg, o->n_steps == 0);
            break;
        case SSL_OPTIM_LARS:
            lars_entry(param, grad, s, e->n_elems, rate, cfg, ssl_param_decayed(e->kind));
            break;
        case SSL_OPTIM_ADAMW:
            adamw_entry(param, grad, s, s + n_params, e->n_elems, rate, cfg, o->n_steps + 1);
            break;
        }
    }
    o->n_steps++;
}

/* lr(step), with W = warmup_steps, T = total_steps, s0 = warmup_start, b = base_lr,
 * f = final_lr, step clamped below at 0:
 *   step < W:              b * (s0 + (1 - s0) * step / W)    (s0*b at 0, reaches b at W)
 *   step >= W, cosine:     c = (1 + cos(pi * min(step - W, T - W) / (T - W))) / 2,
 *                          b * c + f * (1 - c)               (b at W, f at T and after)
 *   step >= W, T <= W:     f                                 (nothing left to decay over)
 *   step >= W, no cosine:  b
 * This is the schedule of the Barlow Twins / VICReg adjust_learning_rate (there s0 = 0,
 * f = 0.001*b) and of solo-learn's warmup_cosine, expressed in steps. */
double ssl_schedule_lr(const struct ssl_schedule *s, int64_t step)
{
    if (step < 0) step = 0;
    if (step < s->warmup_steps) {
        double frac = (double)step / (double)s->warmup_steps;
        return s->base_lr * (s->warmup_start + (1.0 - s->warmup_start) * frac);
    }
    if (!s->cosine) return s->base_lr;
    int64_t span = s->total_steps - s->warmup_steps;
    int64_t t = step - s->warmup_steps;
    if (span <= 0 || t >= span) return s->final_lr;
    double c = 0.5 * (1.0 + cos(ssl_pi * (double)t / (double)span));
    return s->base_lr * c + s->final_lr * (1.0 - c);
}

void ssl_schedule_group_lrs(const struct ssl_schedule *s, int64_t step, double lr[SSL_GROUP_COUNT])
{
    double scheduled = ssl_schedule_lr(s, step);
    lr[SSL_GROUP_MAIN] = scheduled;
    lr[SSL_GROUP_PREDICTOR] = s->predictor_lr >= 0 ? s->predictor_lr : scheduled;
}

/* BYOL's target decay, step clamped to [0, total]: base at 0, 1 at total. A non-positive
 * total means no schedule: base throughout. */
double ssl_ema_tau(double base, int64_t step, int64_t total_steps)
{
    if (total_steps <= 0) return base;
    if (step < 0) step = 0;
    if (step > total_steps) step = total_steps;
    double c = 0.5 * (cos(ssl_pi * (double)step / (double)total_steps) + 1.0);
    return 1.0 - (1.0 - base) * c;
}

void ssl_ema_update(ssl_real *target, const ssl_real *online, int64_t n_elems, double tau)
{
    const ssl_real keep = (ssl_real)tau, take = (ssl_real)(1.0 - tau);
    for (int64_t i = 0; i < n_elems; i++) target[i] = keep * target[i] + take * online[i];
}
