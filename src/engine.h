/* engine.h: one distributed training step of any method (src/method.h).
 *
 * The engine owns the online model (backbone + projector [+ predictor] [+ SwAV prototypes]),
 * the EMA target model when the method has one, the optimizer, the schedule, MoCo's queue,
 * the loss workspaces and the bucketed gradient allreduce. A step is:
 *   for each of optim.accumulate micro-batches: forward every view (online, and the target in
 *   train mode), the method's loss and the auxiliary terms over the global micro-batch through
 *   the MPI loss comm, backward of every view (the gradient allreduce started from inside the
 *   very last backward);
 *   then the allreduce finished, the gradient norm and the loss checked for finiteness, the
 *   optimizer step, the EMA update of the target, MoCo's enqueue, SwAV's prototype
 *   normalisation.
 * Every rank ends the step with identical parameters: a run is a function of (config, seed,
 * rank count). Inputs are this rank's rows of each view; views of another size than
 * model.image_size (aug.size per view: SwAV's small crops, after the large ones) go through a
 * second net sharing the parameters. */
#ifndef SSL_ENGINE_H
#define SSL_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "comm.h"
#include "config.h"
#include "loss_comm.h"
#include "method.h"
#include "models/model.h"
#include "optim.h"
#include "reduce.h"

enum { SSL_ENGINE_MAX_VIEWS = 8 };

struct ssl_step_result {
    double loss;      /* the optimised total: main + weighted auxiliary terms */
    double main;      /* the method's loss */
    double w2, uniformity, alignment; /* unweighted; NAN when the term is off */
    double w2_weight, uniformity_weight, alignment_weight;
    double grad_norm; /* of the summed gradient, before the update */
    double lr;        /* of the main parameter group */
    bool skipped;     /* non-finite and train.on_nonfinite = skip */
};

struct ssl_engine {
    struct ssl_method method;
    const struct ssl_comm *comm;
    struct ssl_model model, target;
    bool has_target;
    /* SwAV's multi-crop: views n_large.. are smaller crops, run through `small`, a second net
     * for the small input size whose parameters, gradients and buffers ARE the model's (the
     * shapes do not depend on the input size); small_own keeps its own block to free */
    struct ssl_model small;
    bool has_small;
    int n_large;
    int64_t *small_own;
    int64_t view_elems[SSL_ENGINE_MAX_VIEWS]; /* c * size * size of each view */
    struct ssl_optim optim;
    struct ssl_schedule schedule;
    int64_t total_steps, epochs, steps_per_epoch;
    int64_t micro; /* rows per view per micro-batch on this rank */
    int accumulate, n_views;
    int64_t image_elems; /* c * h * w of a large view */
    uint64_t seed;
    bool skip_nonfinite;
    double *queue;       /* MoCo (queue_len, d), NULL otherwise */
    int64_t queue_ptr;
    struct ssl_loss_comm lc;
    struct ssl_mpi_loss_ctx lc_state;
    struct ssl_loss_ctx ctx;
    struct ssl_grad_reduce reduce;
    bool reduce_ready;
    ssl_real *dz, *dp, *tmp; /* (V, micro, d) each: projection / prediction gradients, scratch */
    ssl_real *zcat;          /* SwAV: (V micro, d) concatenated crops; NULL otherwise */
    double *work;
    int64_t work_elems;
};

/* Builds everything for `local_batch` rows per view on this rank, `steps_per_epoch` and
 * `epochs` (the schedule's length). Collective (SyncBN and the comm are set up). The model is
 * initialised from run.seed; a checkpoint may overwrite it afterwards. */
enum ssl_status ssl_engine_init(struct ssl_engine *e, const struct ssl_config *cfg,
                                int64_t local_batch, int64_t steps_per_epoch, int64_t epochs,
                                const struct ssl_comm *comm, struct ssl_error *err);
void ssl_engine_free(struct ssl_engine *e);

/* One step: x[v] (local_batch, c, h, w) per view; epoch (0-based) for the auxiliary weights.
 * Collective. Returns SSL_OK, SSL_E_NONFINITE (with a message naming the step and the term;
 * nothing was updated) or another status. */
enum ssl_status ssl_engine_step(struct ssl_engine *e, ssl_real *const *x, int64_t epoch,
                                struct ssl_step_result *r, struct ssl_error *err);

#endif
