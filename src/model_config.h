/* model_config.h: the model.* keys of a job config into a struct ssl_model_cfg. */
#ifndef SSL_MODEL_CONFIG_H
#define SSL_MODEL_CONFIG_H

#include "config.h"
#include "models/model.h"

enum ssl_status ssl_model_cfg_from_config(struct ssl_model_cfg *mc, const struct ssl_config *cfg,
                                          struct ssl_error *err);

#endif
