/* backbones.c: convnet, CIFAR ResNet-18 and mlp as node lists, named as their PyTorch modules. */
#include "backbones.h"

#include <stdio.h>

/* conv (no bias) -> BN -> ReLU, named <prefix>.conv<i> / <prefix>.bn<i> as the peer. */
static int conv_bn_relu(struct ssl_net *net, const char *prefix, int i, int in, int64_t c_out,
                        int64_t stride, const struct ssl_model_cfg *cfg)
{
    char conv[96], bn[96];
    snprintf(conv, sizeof conv, "%s.conv%d", prefix, i);
    snprintf(bn, sizeof bn, "%s.bn%d", prefix, i);
    int x = ssl_net_conv(net, conv, in, c_out, 3, stride, 1, false, SSL_GROUP_MAIN);
    x = ssl_net_bn(net, bn, x, true, cfg->bn_eps, cfg->bn_momentum, SSL_GROUP_MAIN);
    return ssl_net_relu(net, x);
}

static int convnet(struct ssl_net *net, int in, const struct ssl_model_cfg *cfg)
{
    int x = conv_bn_relu(net, "backbone", 1, in, 32, 1, cfg);
    x = conv_bn_relu(net, "backbone", 2, x, 64, 2, cfg);
    x = conv_bn_relu(net, "backbone", 3, x, 128, 2, cfg);
    return ssl_net_pool(net, x);
}

/* torchvision BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)), the shortcut a
 * 1x1 strided conv + BN (`downsample.0`, `downsample.1`) when the shape changes. */
static int basic_block(struct ssl_net *net, const char *prefix, int in, int64_t c_out,
                       int64_t stride, const struct ssl_model_cfg *cfg)
{
    char name[96];
    int64_t c_in = net->nodes[in].c;
    int x = conv_bn_relu(net, prefix, 1, in, c_out, stride, cfg);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    x = ssl_net_conv(net, name, x, c_out, 3, 1, 1, false, SSL_GROUP_MAIN);
    snprintf(name, sizeof name, "%s.bn2", prefix);
    x = ssl_net_bn(net, name, x, true, cfg->bn_eps, cfg->bn_momentum, SSL_GROUP_MAIN);
    int shortcut = in;
    if (stride != 1 || c_in != c_out) {
        snprintf(name, sizeof name, "%s.downsample.0", prefix);
        shortcut = ssl_net_conv(net, name, in, c_out, 1, stride, 0, false, SSL_GROUP_MAIN);
        snprintf(name, sizeof name, "%s.downsample.1", prefix);
        shortcut = ssl_net_bn(net, name, shortcut, true, cfg->bn_eps, cfg->bn_momentum, SSL_GROUP_MAIN);
    }
    return ssl_net_relu(net, ssl_net_add(net, x, shortcut));
}

static int resnet18(struct ssl_net *net, int in, const struct ssl_model_cfg *cfg)
{
    static const int64_t widths[4] = {64, 128, 256, 512}, strides[4] = {1, 2, 2, 2};
    int x = conv_bn_relu(net, "backbone", 1, in, 64, 1, cfg);
    for (int layer = 0; layer < 4; layer++)
        for (int b = 0; b < 2; b++) {
            char prefix[64];
            snprintf(prefix, sizeof prefix, "backbone.layer%d.%d", layer + 1, b);
            x = basic_block(net, prefix, x, widths[layer], b == 0 ? strides[layer] : 1, cfg);
        }
    return ssl_net_pool(net, x);
}

/* nn.Sequential(Flatten, (Linear, BatchNorm1d, ReLU)*): module indices 1, 2, (3), 4, 5, ... */
static int mlp(struct ssl_net *net, int in, const struct ssl_model_cfg *cfg)
{
    int x = ssl_net_flatten(net, in);
    for (int i = 0; i < cfg->n_mlp_hidden; i++) {
        char name[64];
        snprintf(name, sizeof name, "backbone.%d", 1 + 3 * i);
        x = ssl_net_linear(net, name, x, cfg->mlp_hidden[i], true, SSL_GROUP_MAIN);
        snprintf(name, sizeof name, "backbone.%d", 2 + 3 * i);
        x = ssl_net_bn(net, name, x, true, cfg->bn_eps, cfg->bn_momentum, SSL_GROUP_MAIN);
        x = ssl_net_relu(net, x);
    }
    return x;
}

int ssl_backbone_build(struct ssl_net *net, int in, const struct ssl_model_cfg *cfg)
{
    switch (cfg->backbone) {
    case SSL_BACKBONE_CONVNET: return convnet(net, in, cfg);
    case SSL_BACKBONE_RESNET18: return resnet18(net, in, cfg);
    case SSL_BACKBONE_MLP: return mlp(net, in, cfg);
    }
    return -1;
}
