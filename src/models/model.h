/* model.h: the SSL model = backbone + projector (+ predictor), with PyTorch's names.
 *
 * Backbones: `convnet` (28x28: three conv3x3+BN+ReLU at strides 1, 2, 2 to 32, 64, 128
 * channels, global average pool; bench/torch_step.py's ConvNet), `resnet18` (CIFAR form:
 * 3x3 stem at stride 1, no max-pool, BasicBlocks [2, 2, 2, 2], 512 features; torchvision's
 * names), `mlp` (flatten, then Linear-BN1d-ReLU per hidden width; nn.Sequential names).
 * Projector: (Linear-BN-ReLU) per hidden width, then Linear (bias optional, Barlow Twins has
 * none), then optionally a BatchNorm with or without affine parameters (SimSiam) or a group ZCA
 * whitening layer (Shuffled-DBN).
 * Predictor: (Linear-BN-ReLU) per hidden width, then Linear. docs/PYTORCH.md has the names. */
#ifndef SSL_MODEL_H
#define SSL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "../check.h"
#include "../net.h"
#include "../params.h"

enum ssl_backbone { SSL_BACKBONE_CONVNET, SSL_BACKBONE_RESNET18, SSL_BACKBONE_MLP };
enum ssl_last_bn { SSL_LAST_BN_NONE, SSL_LAST_BN_AFFINE, SSL_LAST_BN_NOAFFINE };

enum { SSL_MAX_WIDTHS = 8 };

struct ssl_head_cfg {
    int n_hidden;
    int64_t hidden[SSL_MAX_WIDTHS]; /* widths of the Linear-BN-ReLU blocks */
    int64_t out;                    /* width of the last Linear */
    bool hidden_bias, last_bias;
    enum ssl_last_bn last_bn;
    int64_t whiten_groups; /* > 0: group ZCA whitening after the last Linear (Shuffled-DBN) */
    bool whiten_shuffle;   /* permute features afresh at every forward */
    double whiten_eps;
};

struct ssl_model_cfg {
    enum ssl_backbone backbone;
    int64_t in_channels, image_size;
    int n_mlp_hidden;
    int64_t mlp_hidden[SSL_MAX_WIDTHS];
    struct ssl_head_cfg projector;
    bool has_predictor;
    struct ssl_head_cfg predictor;
    double bn_eps, bn_momentum;
    int64_t prototypes; /* > 0: a "prototypes.weight" (K, projector out) entry, SwAV's
                         * nn.Linear(d, K, bias=False); the loss, not the net, uses it */
};

struct ssl_model {
    struct ssl_model_cfg cfg;
    struct ssl_params params;
    struct ssl_net net;
    int node_input, node_features, node_projection, node_prediction; /* -1: no predictor */
    int param_prototypes; /* entry of prototypes.weight, -1: none */
    int64_t feature_dim, projection_dim, prediction_dim;
    uint64_t seed; /* keys the in-model randomness (whitening shuffles) with the step */
    int64_t step;
};

/* Builds and allocates for `batch` samples per view and n_views views. Bad shapes (e.g. an
 * image too small for the backbone) are SSL_E_USAGE with a message. */
enum ssl_status ssl_model_build(struct ssl_model *m, const struct ssl_model_cfg *cfg,
                                int64_t batch, int n_views, struct ssl_error *err);
void ssl_model_free(struct ssl_model *m);
/* PyTorch's default initialisation (kaiming-uniform(a = sqrt 5) weights, fan-in-uniform biases,
 * BN weight 1, bias 0, running var 1), drawn from the stream (seed, SSL_RNG_INIT, entry index). */
void ssl_model_init_params(struct ssl_model *m, uint64_t seed);

/* Positions the in-model randomness: the next forwards draw from (seed, step, view). */
void ssl_model_set_step(struct ssl_model *m, uint64_t seed, int64_t step);
/* Forward of one view: x (batch, in_channels, image_size, image_size) NCHW. */
int ssl_model_forward(struct ssl_model *m, int view, const ssl_real *x, bool train);
const ssl_real *ssl_model_features(const struct ssl_model *m, int view);   /* (batch, feature_dim) */
const ssl_real *ssl_model_projection(const struct ssl_model *m, int view); /* (batch, projection_dim) */
const ssl_real *ssl_model_prediction(const struct ssl_model *m, int view); /* NULL without predictor */
/* Backward of one view from dL/dz (and dL/dp, may be NULL); accumulates into params.grads. */
int ssl_model_backward(struct ssl_model *m, int view, const ssl_real *dz, const ssl_real *dp);
void ssl_model_zero_grads(struct ssl_model *m);

#endif
