/* backbones.h: backbone builders over a net (see model.h for what each one is). */
#ifndef SSL_BACKBONES_H
#define SSL_BACKBONES_H

#include "model.h"

/* Appends the backbone after node `in`; returns its feature node (rows). */
int ssl_backbone_build(struct ssl_net *net, int in, const struct ssl_model_cfg *cfg);
/* Appends a projector or predictor head named `prefix` after node `in`; returns its output. */
int ssl_head_build(struct ssl_net *net, const char *prefix, int in, const struct ssl_head_cfg *h,
                   enum ssl_param_group group, const struct ssl_model_cfg *cfg);

#endif
