/* config.h: job configuration — YAML job files flattened to dotted keys, key=value overrides,
 * and ONE declarative table of every key (io/config_keys.c: type, default, range or choices,
 * help). Unknown keys and bad values are errors naming the key, the file and the line.
 *
 * Parsed on rank 0; ssl_config_serialize/ssl_config_parse_serialized move the resolved
 * config to other ranks and into checkpoints. Later issues add their keys to the table only. */
#ifndef SSL_CONFIG_H
#define SSL_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "check.h"

enum ssl_key_type {
    SSL_KEY_INT,      /* int64; range [min, max] */
    SSL_KEY_FLOAT,    /* double; range [min, max]; must be finite */
    SSL_KEY_BOOL,     /* true/false (also yes/no, on/off, 1/0) */
    SSL_KEY_STRING,   /* free text (paths, names) */
    SSL_KEY_ENUM,     /* one of choices "a|b|c" */
    SSL_KEY_INT_LIST, /* YAML sequence of ints, or "512,512" on the command line; may be empty */
    SSL_KEY_FLOAT_LIST, /* one number, or a YAML sequence / "1.0,0.1" of them; never empty */
};

struct ssl_key_spec {
    const char *key;     /* dotted, e.g. "optim.lr" */
    enum ssl_key_type type;
    const char *def;     /* default, written as on the command line */
    double min, max;     /* INT, FLOAT and each INT_LIST element */
    const char *choices; /* ENUM: "sgd|lars|adamw" */
    const char *help;    /* one line */
};

/* The table, in io/config_keys.c. */
extern const struct ssl_key_spec ssl_config_keys[];
extern const int ssl_config_n_keys;

struct ssl_config; /* opaque: a value and its origin ("file.yaml:12", "command line", "default") per key */

enum ssl_status ssl_config_create(struct ssl_config **cfg, struct ssl_error *err); /* all defaults */
void ssl_config_free(struct ssl_config *cfg);
/* Merges a YAML job file: nested mappings flatten to dotted keys. */
enum ssl_status ssl_config_load_file(struct ssl_config *cfg, const char *path, struct ssl_error *err);
/* One "key=value" override from the command line. */
enum ssl_status ssl_config_set_arg(struct ssl_config *cfg, const char *arg, struct ssl_error *err);

/* Getters: the key must be in the table with that type (a programming error aborts). */
int64_t ssl_config_int(const struct ssl_config *cfg, const char *key);
double ssl_config_float(const struct ssl_config *cfg, const char *key);
bool ssl_config_bool(const struct ssl_config *cfg, const char *key);
const char *ssl_config_str(const struct ssl_config *cfg, const char *key); /* STRING and ENUM */
/* Copies up to max elements; returns the list length. */
int ssl_config_int_list(const struct ssl_config *cfg, const char *key, int64_t *out, int max);

/* FLOAT_LIST: element `index`; a one-element list gives its value for every index, and an
 * index past the end gives the last element (per-view settings: "last value repeats"). */
double ssl_config_float_at(const struct ssl_config *cfg, const char *key, int index);
/* Length of an INT_LIST or FLOAT_LIST. */
int ssl_config_list_length(const struct ssl_config *cfg, const char *key);

/* The resolved config as YAML text (nested, every key, values as parsed), heap-allocated;
 * with_origin adds a "# from file.yaml:12" comment per key. */
char *ssl_config_serialize(const struct ssl_config *cfg, bool with_origin);
/* Reads ssl_config_serialize's output back (for other ranks and checkpoints). */
enum ssl_status ssl_config_parse_serialized(struct ssl_config *cfg, const char *text,
                                            const char *origin, struct ssl_error *err);
/* `ssltrain help config`: every key with type, default, range/choices and help. */
void ssl_config_print_table(FILE *out);

#endif
