/* model_config.c: reads model.* keys; the table has validated each value already, this only
 * checks what spans keys (list lengths, image size for the backbone). */
#include "model_config.h"

#include <string.h>

static enum ssl_status read_widths(const struct ssl_config *cfg, const char *key, int64_t *out,
                                   int *n_out, struct ssl_error *err)
{
    int n = ssl_config_int_list(cfg, key, out, SSL_MAX_WIDTHS);
    if (n > SSL_MAX_WIDTHS)
        return ssl_error_set(err, SSL_E_USAGE, "%s: at most %d widths, got %d", key, SSL_MAX_WIDTHS, n);
    *n_out = n;
    return SSL_OK;
}

static enum ssl_last_bn last_bn_of(const char *s)
{
    if (strcmp(s, "affine") == 0) return SSL_LAST_BN_AFFINE;
    if (strcmp(s, "noaffine") == 0) return SSL_LAST_BN_NOAFFINE;
    return SSL_LAST_BN_NONE;
}

enum ssl_status ssl_model_cfg_from_config(struct ssl_model_cfg *mc, const struct ssl_config *cfg,
                                          struct ssl_error *err)
{
    memset(mc, 0, sizeof *mc);
    const char *backbone = ssl_config_str(cfg, "model.backbone");
    mc->backbone = strcmp(backbone, "resnet18") == 0 ? SSL_BACKBONE_RESNET18
                   : strcmp(backbone, "mlp") == 0    ? SSL_BACKBONE_MLP
                                                     : SSL_BACKBONE_CONVNET;
    mc->in_channels = ssl_config_int(cfg, "model.in_channels");
    mc->image_size = ssl_config_int(cfg, "model.image_size");
    mc->bn_eps = ssl_config_float(cfg, "model.bn.eps");
    mc->bn_momentum = ssl_config_float(cfg, "model.bn.momentum");
    enum ssl_status rc = read_widths(cfg, "model.mlp.hidden", mc->mlp_hidden, &mc->n_mlp_hidden, err);
    if (!rc) rc = read_widths(cfg, "model.projector.hidden", mc->projector.hidden, &mc->projector.n_hidden, err);
    if (!rc) rc = read_widths(cfg, "model.predictor.hidden", mc->predictor.hidden, &mc->predictor.n_hidden, err);
    if (rc) return rc;
    mc->projector.out = ssl_config_int(cfg, "model.projector.out");
    mc->projector.hidden_bias = ssl_config_bool(cfg, "model.projector.hidden_bias");
    mc->projector.last_bias = ssl_config_bool(cfg, "model.projector.last_bias");
    mc->projector.last_bn = last_bn_of(ssl_config_str(cfg, "model.projector.last_bn"));
    mc->projector.whiten_groups = ssl_config_int(cfg, "model.projector.whiten_groups");
    mc->projector.whiten_shuffle = ssl_config_bool(cfg, "model.projector.whiten_shuffle");
    mc->projector.whiten_eps = ssl_config_float(cfg, "model.projector.whiten_eps");
    mc->has_predictor = mc->predictor.n_hidden > 0;
    mc->predictor.out = ssl_config_int(cfg, "model.predictor.out");
    mc->predictor.hidden_bias = true;
    mc->predictor.last_bias = true;
    mc->predictor.last_bn = SSL_LAST_BN_NONE;
    return SSL_OK;
}
