/* train_dump.c: a split's embeddings into an HDF5 dump (train_dump.h). */
#include "train_dump.h"

#include <stdlib.h>

#include "embeddings.h"
#include "eval_features.h"
#include "version.h"

enum ssl_status ssl_train_dump(const char *path, struct ssl_model *m, struct ssl_dataset *ds,
                               enum ssl_split split, const struct ssl_aug_recipe *recipes,
                               const struct ssl_config *cfg, int64_t step, int64_t epoch,
                               const struct ssl_comm *comm, struct ssl_error *err)
{
    int64_t n = 0;
    int64_t *idx = ssl_eval_subset(&n, ssl_dataset_info(ds)->count, 0, 0, 0, comm);
    if (idx == NULL) return ssl_error_set(err, SSL_E_OTHER, "out of memory for the dump indices");
    struct ssl_aug_recipe plain = ssl_plain_recipe(&recipes[0]);
    struct ssl_features f = {0};
    enum ssl_status rc = ssl_features_extract(&f, m, ds, &plain, 0, 0, idx, n, comm, err);
    char *config = ssl_config_serialize(cfg, false);
    if (!rc) {
        struct ssl_emb_block b = {.h = f.h, .z = f.z, .labels = f.labels, .index = f.index,
                                  .rows = f.n, .dh = f.dh, .dz = f.dz};
        const struct ssl_emb_attr attrs[] = {
            {.name = "format", .str = SSL_EMB_FORMAT, .is_string = true},
            {.name = "format_version", .i64 = SSL_EMB_FORMAT_VERSION},
            {.name = "method", .str = ssl_config_str(cfg, "method.name"), .is_string = true},
            {.name = "step", .i64 = step},
            {.name = "epoch", .i64 = epoch},
            {.name = "split", .str = split == SSL_SPLIT_TRAIN ? "train" : "test", .is_string = true},
            {.name = "dataset", .str = ssl_dataset_info(ds)->source, .is_string = true},
            {.name = "config", .str = config, .is_string = true},
            {.name = "git_revision", .str = ssl_version_revision(), .is_string = true},
        };
        rc = ssl_emb_write(path, &b, attrs, (int)(sizeof attrs / sizeof attrs[0]), comm, err);
    }
    free(config);
    free(idx);
    ssl_features_free(&f);
    return rc;
}
