/* optim_config.h: the optim.* keys of a job config into optimizer settings. */
#ifndef SSL_OPTIM_CONFIG_H
#define SSL_OPTIM_CONFIG_H

#include "config.h"
#include "optim.h"

void ssl_optim_cfg_from_config(struct ssl_optim_cfg *oc, const struct ssl_config *cfg);
/* The schedule from optim.lr, optim.final_lr, optim.warmup_steps, optim.schedule and
 * optim.predictor_lr, over total_steps. */
void ssl_schedule_from_config(struct ssl_schedule *s, const struct ssl_config *cfg,
                              int64_t total_steps);

#endif
