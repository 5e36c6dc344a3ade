/* data_config.h: data.* and aug.* keys into dataset arguments and per-view recipes. */
#ifndef SSL_DATA_CONFIG_H
#define SSL_DATA_CONFIG_H

#include "augment.h"
#include "config.h"
#include "dataset.h"

enum { SSL_MAX_VIEWS = 16 };

void ssl_dataset_args_from_config(struct ssl_dataset_open_args *args, const struct ssl_config *cfg,
                                  enum ssl_split split, MPI_Comm comm);
/* One recipe per view (aug.views of them) for images of the dataset's shape. Checks what spans
 * keys: scale_min <= scale_max, ratio_min <= ratio_max, sigma_min <= sigma_max, integral
 * sizes, per-view lists no longer than aug.views, per-channel lists matching the channels. */
enum ssl_status ssl_aug_recipes_from_config(struct ssl_aug_recipe *recipes, int *n_views,
                                            const struct ssl_config *cfg,
                                            const struct ssl_dataset_info *info,
                                            enum ssl_dataset_kind kind, struct ssl_error *err);

#endif
