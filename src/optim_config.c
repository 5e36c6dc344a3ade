/* optim_config.c: optimizer settings from the config table. */
#include "optim_config.h"

#include <string.h>

void ssl_optim_cfg_from_config(struct ssl_optim_cfg *oc, const struct ssl_config *cfg)
{
    const char *name = ssl_config_str(cfg, "optim.name");
    memset(oc, 0, sizeof *oc);
    oc->kind = strcmp(name, "lars") == 0    ? SSL_OPTIM_LARS
               : strcmp(name, "adamw") == 0 ? SSL_OPTIM_ADAMW
                                            : SSL_OPTIM_SGD;
    oc->momentum = ssl_config_float(cfg, "optim.momentum");
    oc->weight_decay = ssl_config_float(cfg, "optim.weight_decay");
    oc->lars_eta = ssl_config_float(cfg, "optim.lars.eta");
    oc->lars_clip = ssl_config_bool(cfg, "optim.lars.clip");
    oc->beta1 = ssl_config_float(cfg, "optim.adamw.beta1");
    oc->beta2 = ssl_config_float(cfg, "optim.adamw.beta2");
    oc->adam_eps = ssl_config_float(cfg, "optim.adamw.eps");
}

void ssl_schedule_from_config(struct ssl_schedule *s, const struct ssl_config *cfg,
                              int64_t total_steps)
{
    *s = (struct ssl_schedule){
        .base_lr = ssl_config_float(cfg, "optim.lr"),
        .final_lr = ssl_config_float(cfg, "optim.final_lr"),
        .warmup_start = 0,
        .warmup_steps = ssl_config_int(cfg, "optim.warmup_steps"),
        .total_steps = total_steps,
        .cosine = strcmp(ssl_config_str(cfg, "optim.schedule"), "cosine") == 0,
        .predictor_lr = ssl_config_float(cfg, "optim.predictor_lr"),
    };
}
