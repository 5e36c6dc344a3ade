/* optim_config.h: the optim.* keys of a job config into optimizer settings. */
#ifndef SSL_OPTIM_CONFIG_H
#define SSL_OPTIM_CONFIG_H

#include "config.h"
#include "optim.h"

void ssl_optim_cfg_from_config(struct ssl_optim_cfg *oc, const struct ssl_config *cfg);
/* Learning rates per parameter group at `step`: the schedule for the main group; the fixed
 * optim.predictor_lr for the predictor when it is set (SimSiam), else the schedule. */
void ssl_optim_group_lrs(double lr[SSL_GROUP_COUNT], const struct ssl_schedule *s,
                         const struct ssl_config *cfg, int64_t step);

#endif
