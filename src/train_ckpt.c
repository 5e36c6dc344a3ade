/* train_ckpt.c: the trainer's state <-> checkpoint entries (train_ckpt.h). */
#include "train_ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "version.h"

enum { NAME_BYTES = 160 };

/* A growing table of entries whose names live in `names`. */
struct table {
    struct ssl_ckpt_entry *e;
    char (*names)[NAME_BYTES];
    int64_t n, cap;
};

static int table_init(struct table *t, int64_t cap)
{
    t->e = calloc((size_t)cap, sizeof *t->e);
    t->names = calloc((size_t)cap, sizeof *t->names);
    t->n = 0;
    t->cap = cap;
    return t->e && t->names ? 0 : -1;
}

static void table_free(struct table *t)
{
    free(t->e);
    free(t->names);
}

static struct ssl_ckpt_entry *add(struct table *t, const char *group, const char *name,
                                  enum ssl_ckpt_type type, int rank, const int64_t *dims,
                                  const void *data)
{
    SSL_CHECK(t->n < t->cap);
    struct ssl_ckpt_entry *e = &t->e[t->n];
    snprintf(t->names[t->n], NAME_BYTES, "%s/%s", group, name);
    *e = (struct ssl_ckpt_entry){.name = t->names[t->n], .type = type, .rank = rank, .data = data};
    for (int d = 0; d < rank; d++) e->dims[d] = dims[d];
    t->n++;
    return e;
}

/* Every entry of a model's parameter table under `group`. */
static void add_model(struct table *t, const char *group, const struct ssl_model *m)
{
    const struct ssl_params *p = &m->params;
    for (int i = 0; i < p->n_items; i++) {
        const struct ssl_param *it = &p->items[i];
        if (it->kind == SSL_PK_BN_COUNT) /* a 0-dim int64 tensor in PyTorch */
            add(t, group, it->name, SSL_CKPT_I64, 0, NULL, p->counters + it->offset);
        else
            add(t, group, it->name, SSL_CKPT_F32, it->shape.n_dims, it->shape.dim,
                ssl_param_data(p, i));
    }
}

static int64_t entries_needed(const struct ssl_engine *e)
{
    return e->model.params.n_items + (e->has_target ? e->target.params.n_items : 0) + 8;
}

/* The engine's state as entries; scalars point into *steps_out. */
static void engine_entries(struct table *t, const struct ssl_engine *e, const int64_t *steps,
                           const int64_t *queue_ptr)
{
    add_model(t, "model", &e->model);
    if (e->has_target) add_model(t, "target", &e->target);
    if (e->optim.n_state > 0) add(t, "optim", "state", SSL_CKPT_F32, 1, &e->optim.n_state, e->optim.state);
    add(t, "optim", "steps", SSL_CKPT_I64, 0, NULL, steps);
    if (e->queue != NULL) {
        int64_t dims[2] = {e->method.queue_len, e->model.projection_dim};
        add(t, "state", "queue", SSL_CKPT_F64, 2, dims, e->queue);
        add(t, "state", "queue_ptr", SSL_CKPT_I64, 0, NULL, queue_ptr);
    }
}

enum ssl_status ssl_train_ckpt_write(const struct ssl_engine *e, const struct ssl_train_cursor *cur,
                                     const struct ssl_config *cfg, const char *dir, int keep,
                                     const struct ssl_comm *comm, struct ssl_error *err)
{
    struct table t;
    if (table_init(&t, entries_needed(e)) != 0)
        return ssl_error_set(err, SSL_E_OTHER, "out of memory for the checkpoint table");
    int64_t steps = e->optim.n_steps, queue_ptr = e->queue_ptr;
    engine_entries(&t, e, &steps, &queue_ptr);
    char *config = ssl_config_serialize(cfg, false);
    const struct ssl_ckpt_attr attrs[] = {
        {.name = "config", .kind = SSL_CKPT_ATTR_STRING, .str = config},
        {.name = "git_revision", .kind = SSL_CKPT_ATTR_STRING, .str = ssl_version_revision()},
        {.name = "method", .kind = SSL_CKPT_ATTR_STRING, .str = ssl_method_name(e->method.kind)},
        {.name = "epoch", .kind = SSL_CKPT_ATTR_INT64, .i64 = cur->epoch},
        {.name = "epoch_step", .kind = SSL_CKPT_ATTR_INT64, .i64 = cur->epoch_step},
        {.name = "ranks", .kind = SSL_CKPT_ATTR_INT64, .i64 = comm->size},
        {.name = "global_batch", .kind = SSL_CKPT_ATTR_INT64, .i64 = ssl_config_int(cfg, "data.batch")},
    };
    const struct ssl_ckpt_group groups[] = {
        {"model", "the online network, PyTorch state_dict names"},
        {"optim", "optimizer state in the parameters' layout; steps taken"},
    };
    struct ssl_ckpt_content content = {.entries = t.e, .n_entries = t.n, .attrs = attrs,
                                       .n_attrs = (int64_t)(sizeof attrs / sizeof attrs[0]),
                                       .groups = groups, .n_groups = 2};
    enum ssl_status rc = ssl_ckpt_write(dir, cur->step, &content, keep, comm, err);
    free(config);
    table_free(&t);
    return rc;
}

/* ---- reading ------------------------------------------------------------------------------ */

void ssl_config_value_text(const struct ssl_config *cfg, const struct ssl_key_spec *k, char *buf,
                           size_t n_bytes)
{
    switch (k->type) {
    case SSL_KEY_INT: snprintf(buf, n_bytes, "%lld", (long long)ssl_config_int(cfg, k->key)); break;
    case SSL_KEY_FLOAT: { /* the shortest text that reads back as the same double */
        double v = ssl_config_float(cfg, k->key);
        snprintf(buf, n_bytes, "%.15g", v);
        if (strtod(buf, NULL) != v) snprintf(buf, n_bytes, "%.17g", v);
        break;
    }
    case SSL_KEY_BOOL: snprintf(buf, n_bytes, "%s", ssl_config_bool(cfg, k->key) ? "true" : "false"); break;
    case SSL_KEY_STRING:
    case SSL_KEY_ENUM: snprintf(buf, n_bytes, "%s", ssl_config_str(cfg, k->key)); break;
    case SSL_KEY_INT_LIST:
    case SSL_KEY_FLOAT_LIST: {
        size_t used = 0;
        buf[0] = '\0';
        int len = ssl_config_list_length(cfg, k->key);
        int64_t ints[64];
        if (k->type == SSL_KEY_INT_LIST) ssl_config_int_list(cfg, k->key, ints, 64);
        for (int i = 0; i < len && i < 64 && used < n_bytes; i++) {
            if (k->type == SSL_KEY_INT_LIST)
                used += (size_t)snprintf(buf + used, n_bytes - used, "%s%lld", i ? "," : "", (long long)ints[i]);
            else
                used += (size_t)snprintf(buf + used, n_bytes - used, "%s%.15g", i ? "," : "",
                                         ssl_config_float_at(cfg, k->key, i));
        }
        break;
    }
    }
}

/* Keys that may differ on resume: where and how the run is observed, not what it computes. */
static bool free_to_change(const char *key)
{
    static const char *const prefixes[] = {"run.", "ckpt.", "dump.", "eval.", "linalg.", "bench."};
    static const char *const keys[] = {"train.log_every", "train.max_steps", "train.on_nonfinite",
                                       "data.path"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0) return true;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(key, keys[i]) == 0) return true;
    return false;
}

static enum ssl_status compare_configs(const struct ssl_config *now, const char *stored_text,
                                       const char *path, struct ssl_error *err)
{
    struct ssl_config *stored = NULL;
    struct ssl_error perr = {0};
    enum ssl_status rc = ssl_config_create(&stored, err);
    if (!rc && ssl_config_parse_serialized(stored, stored_text, path, &perr) != SSL_OK)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: its config cannot be read: %s", path, perr.msg);
    char diff[1536] = "";
    size_t used = 0;
    int n_diff = 0;
    for (int i = 0; i < ssl_config_n_keys && !rc; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        if (free_to_change(k->key)) continue;
        char a[256], b[256];
        ssl_config_value_text(stored, k, a, sizeof a);
        ssl_config_value_text(now, k, b, sizeof b);
        if (strcmp(a, b) == 0) continue;
        n_diff++;
        if (used < sizeof diff)
            used += (size_t)snprintf(diff + used, sizeof diff - used, "%s%s (checkpoint %s, now %s)",
                                     n_diff > 1 ? ", " : "", k->key, a, b);
    }
    if (!rc && n_diff > 0)
        rc = ssl_error_set(err, SSL_E_USAGE,
                           "%s: the config differs in %d key%s that change%s the run: %s "
                           "(use another run.name, or run.resume=never to start afresh)",
                           path, n_diff, n_diff > 1 ? "s" : "", n_diff > 1 ? "" : "s", diff);
    ssl_config_free(stored);
    return rc;
}

/* Reads every entry of the table into the data pointers it names (const-cast: the table is
 * built from the engine's writable buffers). */
static enum ssl_status read_table(struct ssl_ckpt *ck, const struct table *t, struct ssl_error *err)
{
    enum ssl_status rc = SSL_OK;
    for (int64_t i = 0; i < t->n && !rc; i++)
        rc = ssl_ckpt_read(ck, &t->e[i], (void *)(uintptr_t)t->e[i].data, err);
    return rc;
}

enum ssl_status ssl_train_ckpt_config(char **config_text, const char *path,
                                      const struct ssl_comm *comm, struct ssl_error *err)
{
    struct ssl_ckpt *ck = NULL;
    enum ssl_status rc = ssl_ckpt_open(&ck, path, comm, err);
    if (!rc) rc = ssl_ckpt_attr_string(ck, "config", config_text, err);
    ssl_ckpt_close(ck);
    return rc;
}

enum ssl_status ssl_train_ckpt_load(struct ssl_engine *e, struct ssl_train_cursor *cur,
                                    const struct ssl_config *cfg, const char *path,
                                    const struct ssl_comm *comm, struct ssl_error *err)
{
    struct ssl_ckpt *ck = NULL;
    char *config = NULL;
    struct table t = {0};
    int64_t steps = 0, queue_ptr = 0;
    enum ssl_status rc = ssl_ckpt_open(&ck, path, comm, err);
    if (!rc) rc = ssl_ckpt_attr_string(ck, "config", &config, err);
    if (!rc) rc = compare_configs(cfg, config, path, err);
    if (!rc && table_init(&t, entries_needed(e)) != 0)
        rc = ssl_error_set(err, SSL_E_OTHER, "out of memory for the checkpoint table");
    if (!rc) {
        engine_entries(&t, e, &steps, &queue_ptr);
        rc = read_table(ck, &t, err);
    }
    if (!rc) rc = ssl_ckpt_attr_int64(ck, "step", &cur->step, err);
    if (!rc) rc = ssl_ckpt_attr_int64(ck, "epoch", &cur->epoch, err);
    if (!rc) rc = ssl_ckpt_attr_int64(ck, "epoch_step", &cur->epoch_step, err);
    if (!rc && steps != cur->step)
        rc = ssl_error_set(err, SSL_E_DATA, "%s: optim/steps %lld disagrees with step %lld", path,
                           (long long)steps, (long long)cur->step);
    if (!rc) {
        e->optim.n_steps = steps;
        e->queue_ptr = queue_ptr;
    }
    table_free(&t);
    free(config);
    ssl_ckpt_close(ck);
    return rc;
}

enum ssl_status ssl_train_ckpt_load_model(struct ssl_model *m, char **config_text,
                                          const char *path, const struct ssl_comm *comm,
                                          struct ssl_error *err)
{
    struct ssl_ckpt *ck = NULL;
    struct table t = {0};
    enum ssl_status rc = ssl_ckpt_open(&ck, path, comm, err);
    if (!rc && config_text) rc = ssl_ckpt_attr_string(ck, "config", config_text, err);
    if (!rc && table_init(&t, m->params.n_items + 1) != 0)
        rc = ssl_error_set(err, SSL_E_OTHER, "out of memory for the checkpoint table");
    if (!rc) {
        add_model(&t, "model", m);
        rc = read_table(ck, &t, err);
    }
    table_free(&t);
    ssl_ckpt_close(ck);
    return rc;
}
