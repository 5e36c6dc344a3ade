/* heads.c: projector and predictor MLPs as nn.Sequential(Linear, BN1d, ReLU, ..., Linear[, BN1d]). */
#include "backbones.h"

#include <stdio.h>

int ssl_head_build(struct ssl_net *net, const char *prefix, int in, const struct ssl_head_cfg *h,
                   enum ssl_param_group group, const struct ssl_model_cfg *cfg)
{
    char name[96];
    int x = in, index = 0;
    for (int i = 0; i < h->n_hidden; i++, index += 3) {
        snprintf(name, sizeof name, "%s.%d", prefix, index);
        x = ssl_net_linear(net, name, x, h->hidden[i], h->hidden_bias, group);
        snprintf(name, sizeof name, "%s.%d", prefix, index + 1);
        x = ssl_net_bn(net, name, x, true, cfg->bn_eps, cfg->bn_momentum, group);
        x = ssl_net_relu(net, x);
    }
    snprintf(name, sizeof name, "%s.%d", prefix, index);
    x = ssl_net_linear(net, name, x, h->out, h->last_bias, group);
    if (h->whiten_groups > 0) return ssl_net_whiten(net, x, h->out / h->whiten_groups, h->whiten_eps);
    if (h->last_bn != SSL_LAST_BN_NONE) {
        snprintf(name, sizeof name, "%s.%d", prefix, index + 1);
        x = ssl_net_bn(net, name, x, h->last_bn == SSL_LAST_BN_AFFINE, cfg->bn_eps,
                       cfg->bn_momentum, group);
    }
    return x;
}
