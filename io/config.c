/* config.c: the resolved job configuration — one value per row of ssl_config_keys
 * (io/config_keys.c), merged from YAML job files (libyaml's document API; nested mappings
 * flatten to dotted keys) and key=value overrides, read by typed getters, written back as
 * nested YAML for other ranks and checkpoints, and printed as a table for `help config`.
 *
 * Invariants: cfg->vals[i] is row i of the table and always valid for its type — a new value
 * is parsed into a temporary and replaces the old one only after every check passed; strings
 * are valid UTF-8 without NUL; floats are finite; every number is in its range. Getters never
 * allocate. A bad user input returns SSL_E_USAGE with one line "where: key: what is wrong";
 * a load that fails part way leaves the keys it already merged (the caller exits anyway). */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

enum {
    SSL_CONFIG_KEY_MAX = 256,            /* bytes of the longest dotted key read from a file */
    SSL_CONFIG_WHERE_MAX = 1024,         /* "file:line" in messages; the message is 1 KiB */
    SSL_CONFIG_FILE_MAX = 16 << 20,      /* bytes; job files are a few KiB */
};

struct ssl_config_value {
    union {
        int64_t i;
        double f;
        bool b;
    } u;                /* INT, FLOAT, BOOL */
    char *str;          /* STRING, ENUM: owned */
    int64_t *list;      /* (n_list) INT_LIST: owned, NULL when empty */
    double *flist;      /* (n_list) FLOAT_LIST: owned, never empty */
    int n_list;
    const char *src;    /* "default", "command line", or a name owned by cfg->sources */
    size_t line;        /* 1-based line in src; 0 when src has no lines */
    int load_id;        /* the load that set it (0 for none): a key given twice in one file */
};

struct ssl_config {
    int n_keys;                    /* ssl_config_n_keys */
    struct ssl_config_value *vals; /* (n_keys) vals[i] holds row i of ssl_config_keys */
    char **sources;                /* (n_sources) owned names of the loaded files and texts */
    int n_sources;
};

/* ---- memory: allocation failure is not a user error (check.h) ---- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    SSL_CHECKF(p != NULL, "config: out of memory (%zu x %zu bytes)", n, size);
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    SSL_CHECKF(p != NULL, "config: out of memory");
    return p;
}

/* ---- the table ---- */

static int find_key(const char *key)
{
    for (int i = 0; i < ssl_config_n_keys; i++)
        if (strcmp(ssl_config_keys[i].key, key) == 0) return i;
    return -1;
}

/* The first row under the group prefix[0..len) + ".", or -1: "optim" is a group, not a key. */
static int find_group(const char *prefix, size_t len)
{
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const char *k = ssl_config_keys[i].key;
        if (strncmp(k, prefix, len) == 0 && k[len] == '.') return i;
    }
    return -1;
}

static const char *last_component(const char *key)
{
    const char *dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* Optimal-string-alignment distance (edits and adjacent swaps); SIZE_MAX if too long. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na >= SSL_CONFIG_KEY_MAX || nb >= SSL_CONFIG_KEY_MAX) return SIZE_MAX;
    size_t rows[3][SSL_CONFIG_KEY_MAX + 1];
    size_t *before = rows[0], *prev = rows[1], *cur = rows[2];
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t d = min_size(min_size(prev[j], cur[j - 1]) + 1, prev[j - 1] + (a[i - 1] != b[j - 1]));
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d = min_size(d, before[j - 2] + 1);
            cur[j] = d;
        }
        size_t *spare = before;
        before = prev;
        prev = cur;
        cur = spare;
    }
    return prev[nb];
}

/* What a typo most likely meant, or NULL. A unique key with the same last component comes
 * first ("optim.eta": the group was wrong), then the nearest key within a third of the
 * length ("optim.lrr", "data.batch_size"). */
static const char *suggest_key(const char *typed)
{
    const char *last = last_component(typed), *same_last = NULL;
    int n_same_last = 0;
    for (int i = 0; i < ssl_config_n_keys; i++) {
        if (*last && strcmp(last_component(ssl_config_keys[i].key), last) == 0) {
            same_last = ssl_config_keys[i].key;
            n_same_last++;
        }
    }
    if (n_same_last == 1) return same_last;
    const char *best = NULL;
    size_t best_d = SIZE_MAX, limit = strlen(typed) / 3 > 2 ? strlen(typed) / 3 : 2;
    for (int i = 0; i < ssl_config_n_keys; i++) {
        size_t d = edit_distance(typed, ssl_config_keys[i].key);
        if (d < best_d) {
            best_d = d;
            best = ssl_config_keys[i].key;
        }
    }
    return best_d <= limit ? best : NULL;
}

static enum ssl_status unknown_key(struct ssl_error *err, const char *where, const char *key)
{
    const char *guess = suggest_key(key);
    if (guess)
        return ssl_error_set(err, SSL_E_USAGE, "%s: unknown key '%s' (did you mean '%s'?)", where,
                             key, guess);
    return ssl_error_set(err, SSL_E_USAGE, "%s: unknown key '%s' (`ssltrain help config` lists them)",
                         where, key);
}

/* ---- text forms of numbers and ranges ---- */

/* The fewest significant digits that read back as x: "0.05", not "0.050000000000000003";
 * written without an exponent up to 17 integer digits: "100", not "1e+02". */
static void fmt_double(char *buf, size_t n, double x)
{
    int digits = 1;
    for (; digits < 17; digits++) {
        snprintf(buf, n, "%.*g", digits, x);
        if (strtod(buf, NULL) == x) break;
    }
    snprintf(buf, n, "%.*e", digits - 1, x);
    int exponent = atoi(strchr(buf, 'e') + 1);
    if (exponent >= digits && exponent < 17) digits = exponent + 1;
    snprintf(buf, n, "%.*g", digits, x);
}

/* The table writes an open end as the nearest double inside it; show the end itself when
 * that is the short number (DBL_TRUE_MIN -> "(0", 1 - 2^-53 -> "1)"). */
static bool fmt_bound(char *buf, size_t n, double x, double outward)
{
    char inner[40], outer[40];
    double next = nextafter(x, outward);
    fmt_double(inner, sizeof inner, x);
    fmt_double(outer, sizeof outer, next);
    bool open = isfinite(next) && ((fpclassify(x) == FP_SUBNORMAL && next == 0) ||
                                   (strlen(inner) >= 16 && strlen(outer) <= 8));
    snprintf(buf, n, "%s", open ? outer : inner);
    return open;
}

/* "[0, 1024]", "(0, 1]", "a|b|c"; for INT_LIST the range of each element. */
static const char *range_text(const struct ssl_key_spec *k, char *buf, size_t n)
{
    char lo[40], hi[40];
    switch (k->type) {
    case SSL_KEY_INT:
    case SSL_KEY_INT_LIST:
        snprintf(buf, n, "[%.0f, %.0f]", k->min, k->max);
        return buf;
    case SSL_KEY_FLOAT:
    case SSL_KEY_FLOAT_LIST: {
        bool lo_open = fmt_bound(lo, sizeof lo, k->min, -INFINITY);
        bool hi_open = fmt_bound(hi, sizeof hi, k->max, INFINITY);
        snprintf(buf, n, "%c%s, %s%c", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
        return buf;
    }
    case SSL_KEY_BOOL: return "true|false";
    case SSL_KEY_ENUM: return k->choices;
    case SSL_KEY_STRING: return "text";
    }
    return "?";
}

static const char *expected_text(enum ssl_key_type t)
{
    switch (t) {
    case SSL_KEY_INT: return "an integer";
    case SSL_KEY_FLOAT: return "a number";
    case SSL_KEY_BOOL: return "true or false";
    case SSL_KEY_STRING: return "a string";
    case SSL_KEY_ENUM: return "one of the choices";
    case SSL_KEY_INT_LIST: return "a list of integers";
    case SSL_KEY_FLOAT_LIST: return "a number or a list of numbers";
    }
    return "?";
}

static const char *type_name(enum ssl_key_type t)
{
    switch (t) {
    case SSL_KEY_INT: return "int";
    case SSL_KEY_FLOAT: return "float";
    case SSL_KEY_BOOL: return "bool";
    case SSL_KEY_STRING: return "string";
    case SSL_KEY_ENUM: return "enum";
    case SSL_KEY_INT_LIST: return "int list";
    case SSL_KEY_FLOAT_LIST: return "float list";
    }
    return "?";
}

/* ---- UTF-8: the serialized config must be readable by libyaml, which takes nothing else ---- */

/* Length of the strict UTF-8 sequence at s (no overlongs, surrogates, > U+10FFFF), 0 if bad. */
static int utf8_decode(const unsigned char *s, uint32_t *cp)
{
    int n;
    uint32_t least;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0) == 0xC0) n = 1, *cp = s[0] & 0x1Fu, least = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) n = 2, *cp = s[0] & 0x0Fu, least = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) n = 3, *cp = s[0] & 0x07u, least = 0x10000;
    else return 0;
    for (int i = 1; i <= n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        *cp = *cp << 6 | (s[i] & 0x3Fu);
    }
    if (*cp < least || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
    return n + 1;
}

static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp;
    for (int n; *p; p += n)
        if ((n = utf8_decode(p, &cp)) == 0) return false;
    return true;
}

/* ---- parsing one value ---- */

__attribute__((format(printf, 5, 6))) static enum ssl_status
bad_value(struct ssl_error *err, const char *where, const char *key, const char *text,
          const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return ssl_error_set(err, SSL_E_USAGE, "%s: %s: '%.200s' %s", where, key, text, why);
}

/* Bounds beyond int64 mean "none"; converting them would be undefined. */
static bool int_in_range(int64_t v, double lo, double hi)
{
    if (lo >= -0x1p63 && v < (int64_t)ceil(lo)) return false;
    if (hi < 0x1p63 && v > (int64_t)floor(hi)) return false;
    return true;
}

/* Decimal only, optional sign, nothing around it: "1e3", "0x10", " 5" and "5 " are errors. */
static enum ssl_status parse_int(const struct ssl_key_spec *k, const char *text, const char *where,
                                 int64_t *out, struct ssl_error *err)
{
    const char *p = text + (text[0] == '+' || text[0] == '-');
    bool digits = *p != '\0';
    for (; *p; p++) digits = digits && *p >= '0' && *p <= '9';
    if (!digits) return bad_value(err, where, k->key, text, "is not an integer");
    errno = 0;
    long long v = strtoll(text, NULL, 10);
    if (errno == ERANGE) return bad_value(err, where, k->key, text, "does not fit a 64-bit integer");
    char range[128];
    if (!int_in_range(v, k->min, k->max))
        return bad_value(err, where, k->key, text, "is out of range %s", range_text(k, range, sizeof range));
    *out = v;
    return SSL_OK;
}

static bool is_yaml_non_finite(const char *s)
{
    s += *s == '+' || *s == '-';
    return strcmp(s, ".inf") == 0 || strcmp(s, ".Inf") == 0 || strcmp(s, ".INF") == 0 ||
           strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0;
}

static enum ssl_status parse_float(const struct ssl_key_spec *k, const char *text, const char *where,
                                   double *out, struct ssl_error *err)
{
    char *end;
    double v = strtod(text, &end);
    bool number = text[0] != '\0' && strchr(" \t\n\v\f\r", text[0]) == NULL && *end == '\0';
    if (is_yaml_non_finite(text) || (number && !isfinite(v)))
        return bad_value(err, where, k->key, text, "is not finite");
    if (!number) return bad_value(err, where, k->key, text, "is not a number");
    char range[128];
    if (!(v >= k->min && v <= k->max))
        return bad_value(err, where, k->key, text, "is out of range %s", range_text(k, range, sizeof range));
    *out = v;
    return SSL_OK;
}

static bool equal_nocase(const char *a, const char *b)
{
    for (; *a && *b; a++, b++) {
        char ca = *a >= 'A' && *a <= 'Z' ? (char)(*a - 'A' + 'a') : *a;
        if (ca != *b) return false;
    }
    return *a == *b;
}

/* YAML 1.1's spellings, case-insensitive, plus 1/0 as on most command lines. */
static enum ssl_status parse_bool(const struct ssl_key_spec *k, const char *text, const char *where,
                                  bool *out, struct ssl_error *err)
{
    static const char *const spellings[][2] = {{"true", "false"}, {"yes", "no"}, {"on", "off"}, {"1", "0"}};
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        for (int value = 0; value < 2; value++) {
            if (equal_nocase(text, spellings[i][value])) {
                *out = value == 0;
                return SSL_OK;
            }
        }
    }
    return bad_value(err, where, k->key, text, "is not a boolean (true|false|yes|no|on|off|1|0)");
}

static bool enum_has(const char *choices, const char *text)
{
    size_t n = strlen(text);
    for (const char *c = choices;;) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, text, n) == 0) return true;
        if (bar == NULL) return false;
        c = bar + 1;
    }
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    return s;
}

/* The command-line and flow forms: "512,512", "[512, 512]", "" and "[]". */
static enum ssl_status parse_list_text(const struct ssl_key_spec *k, const char *text,
                                       const char *where, struct ssl_config_value *out,
                                       struct ssl_error *err)
{
    char *copy = xstrdup(text), *s = trim(copy);
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
        s[n - 1] = '\0';
        s = trim(s + 1);
    }
    size_t count = *s ? 1 : 0;
    for (const char *c = s; *c; c++) count += *c == ',';
    enum ssl_status st = SSL_OK;
    if (count > INT_MAX) st = bad_value(err, where, k->key, text, "has too many elements");
    bool floats = k->type == SSL_KEY_FLOAT_LIST;
    if (floats && count == 0 && st == SSL_OK) st = bad_value(err, where, k->key, text, "is an empty list");
    if (count && st == SSL_OK) {
        if (floats) out->flist = xcalloc(count, sizeof *out->flist);
        else out->list = xcalloc(count, sizeof *out->list);
    }
    for (char *elem = s; st == SSL_OK && out->n_list < (int)count; out->n_list++) {
        char *comma = strchr(elem, ',');
        if (comma) *comma = '\0';
        char *e = trim(elem);
        if (*e == '\0') st = bad_value(err, where, k->key, text, "has an empty element");
        else if (floats) st = parse_float(k, e, where, &out->flist[out->n_list], err);
        else st = parse_int(k, e, where, &out->list[out->n_list], err);
        elem = comma ? comma + 1 : elem;
    }
    free(copy);
    return st;
}

/* Parses text as key k's type into out (zeroed; the caller frees it on failure). */
static enum ssl_status parse_scalar(const struct ssl_key_spec *k, const char *text,
                                    const char *where, struct ssl_config_value *out,
                                    struct ssl_error *err)
{
    if (text[0] == '\0' && k->type != SSL_KEY_STRING && k->type != SSL_KEY_INT_LIST)
        return ssl_error_set(err, SSL_E_USAGE, "%s: %s: empty value (expected %s)", where, k->key,
                             k->type == SSL_KEY_ENUM ? k->choices : expected_text(k->type));
    switch (k->type) {
    case SSL_KEY_INT: return parse_int(k, text, where, &out->u.i, err);
    case SSL_KEY_FLOAT: return parse_float(k, text, where, &out->u.f, err);
    case SSL_KEY_BOOL: return parse_bool(k, text, where, &out->u.b, err);
    case SSL_KEY_STRING:
        if (!utf8_valid(text)) return bad_value(err, where, k->key, text, "is not valid UTF-8");
        out->str = xstrdup(text);
        return SSL_OK;
    case SSL_KEY_ENUM:
        if (!enum_has(k->choices, text))
            return bad_value(err, where, k->key, text, "is not one of %s", k->choices);
        out->str = xstrdup(text);
        return SSL_OK;
    case SSL_KEY_INT_LIST:
    case SSL_KEY_FLOAT_LIST: return parse_list_text(k, text, where, out, err);
    }
    SSL_CHECKF(false, "config key '%s' has an unknown type %d", k->key, (int)k->type);
}

static void value_clear(struct ssl_config_value *v)
{
    free(v->str);
    free(v->list);
    free(v->flist);
    v->flist = NULL;
    v->str = NULL;
    v->list = NULL;
    v->n_list = 0;
}

/* Row i takes the new value nv (moved) and its origin. */
static void value_replace(struct ssl_config *cfg, int i, struct ssl_config_value *nv,
                          const char *src, size_t line, int load_id)
{
    value_clear(&cfg->vals[i]);
    nv->src = src;
    nv->line = line;
    nv->load_id = load_id;
    cfg->vals[i] = *nv;
}

/* ---- create and free ---- */

/* A duplicate row would never be read; a key that is also a group could not be nested. */
static enum ssl_status check_table(struct ssl_error *err)
{
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const char *a = ssl_config_keys[i].key;
        for (int j = 0; j < ssl_config_n_keys; j++) {
            const char *b = ssl_config_keys[j].key;
            if (j > i && strcmp(a, b) == 0)
                return ssl_error_set(err, SSL_E_OTHER, "io/config_keys.c: key '%s' is declared twice", a);
            if (strncmp(b, a, strlen(a)) == 0 && b[strlen(a)] == '.')
                return ssl_error_set(err, SSL_E_OTHER,
                                     "io/config_keys.c: '%s' is both a key and the group of '%s'", a, b);
        }
    }
    return SSL_OK;
}

static enum ssl_status set_default(struct ssl_config *cfg, int i, struct ssl_error *err)
{
    const struct ssl_key_spec *k = &ssl_config_keys[i];
    SSL_CHECKF(k->def != NULL, "config key '%s' has no default", k->key);
    struct ssl_config_value nv = {0};
    struct ssl_error bad = {0};
    if (parse_scalar(k, k->def, "io/config_keys.c (default)", &nv, &bad) != SSL_OK) {
        value_clear(&nv);
        return ssl_error_set(err, SSL_E_OTHER, "%s", bad.msg);
    }
    value_replace(cfg, i, &nv, "default", 0, 0);
    return SSL_OK;
}

enum ssl_status ssl_config_create(struct ssl_config **out, struct ssl_error *err)
{
    *out = NULL;
    struct ssl_config *cfg = xcalloc(1, sizeof *cfg);
    cfg->n_keys = ssl_config_n_keys;
    cfg->vals = xcalloc((size_t)cfg->n_keys, sizeof *cfg->vals);
    enum ssl_status st = check_table(err);
    for (int i = 0; st == SSL_OK && i < cfg->n_keys; i++) st = set_default(cfg, i, err);
    if (st != SSL_OK) {
        ssl_config_free(cfg);
        return st;
    }
    *out = cfg;
    return SSL_OK;
}

void ssl_config_free(struct ssl_config *cfg)
{
    if (cfg == NULL) return;
    for (int i = 0; i < cfg->n_keys; i++) value_clear(&cfg->vals[i]);
    free(cfg->vals);
    for (int s = 0; s < cfg->n_sources; s++) free(cfg->sources[s]);
    free(cfg->sources);
    free(cfg);
}

/* ---- YAML ---- */

struct ssl_config_load { /* one file or text being merged */
    struct ssl_config *cfg;
    yaml_document_t *doc;
    const char *name; /* for messages and origins; owned by cfg->sources */
    int load_id;
    struct ssl_error *err;
};

static const char *add_source(struct ssl_config *cfg, const char *name)
{
    char **grown = realloc(cfg->sources, ((size_t)cfg->n_sources + 1) * sizeof *grown);
    SSL_CHECKF(grown != NULL, "config: out of memory");
    cfg->sources = grown;
    grown[cfg->n_sources] = xstrdup(name);
    return grown[cfg->n_sources++];
}

static const yaml_node_t *node_at(const struct ssl_config_load *ld, int id)
{
    const yaml_node_t *n = yaml_document_get_node(ld->doc, id);
    SSL_CHECKF(n != NULL, "libyaml returned a dangling node id %d", id);
    return n;
}

static size_t node_line(const yaml_node_t *n) { return n->start_mark.line + 1; }

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a sequence";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static const char *scalar_text(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* An unquoted ~, null or nothing: an empty value (an empty group, "" or []). */
static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = scalar_text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static void where_at(char *buf, const struct ssl_config_load *ld, const yaml_node_t *n)
{
    snprintf(buf, SSL_CONFIG_WHERE_MAX, "%s:%zu", ld->name, node_line(n));
}

static enum ssl_status check_no_nul(const struct ssl_config_load *ld, const yaml_node_t *n,
                                    const char *key)
{
    if (strlen(scalar_text(n)) == n->data.scalar.length) return SSL_OK;
    return ssl_error_set(ld->err, SSL_E_USAGE, "%s:%zu: %s: the value contains a NUL character",
                         ld->name, node_line(n), key);
}

static enum ssl_status parse_list_node(const struct ssl_config_load *ld, const struct ssl_key_spec *k,
                                       const yaml_node_t *seq, struct ssl_config_value *out)
{
    const yaml_node_item_t *items = seq->data.sequence.items.start;
    ptrdiff_t count = seq->data.sequence.items.top - items;
    char where[SSL_CONFIG_WHERE_MAX];
    where_at(where, ld, seq);
    bool floats = k->type == SSL_KEY_FLOAT_LIST;
    if (count > INT_MAX)
        return ssl_error_set(ld->err, SSL_E_USAGE, "%s: %s: too many elements", where, k->key);
    if (floats && count == 0)
        return ssl_error_set(ld->err, SSL_E_USAGE, "%s: %s: empty list (give one number for every view, or one per view)", where, k->key);
    if (floats) out->flist = xcalloc((size_t)count, sizeof *out->flist);
    else out->list = count ? xcalloc((size_t)count, sizeof *out->list) : NULL;
    for (ptrdiff_t i = 0; i < count; i++) {
        const yaml_node_t *item = node_at(ld, items[i]);
        where_at(where, ld, item);
        if (item->type != YAML_SCALAR_NODE)
            return ssl_error_set(ld->err, SSL_E_USAGE, "%s: %s: expected %s element, got %s",
                                 where, k->key, floats ? "a number" : "an integer", node_kind(item));
        if (is_null(item))
            return ssl_error_set(ld->err, SSL_E_USAGE, "%s: %s: empty list element", where, k->key);
        enum ssl_status st = check_no_nul(ld, item, k->key);
        if (st == SSL_OK && floats)
            st = parse_float(k, scalar_text(item), where, &out->flist[out->n_list++], ld->err);
        else if (st == SSL_OK)
            st = parse_int(k, scalar_text(item), where, &out->list[out->n_list++], ld->err);
        if (st != SSL_OK) return st;
    }
    return SSL_OK;
}

/* Row i from the value node of the pair whose key node is kn. Messages cite the key's line:
 * an empty or block value starts on another line, or nowhere. */
static enum ssl_status set_from_node(const struct ssl_config_load *ld, int i, const yaml_node_t *kn,
                                     const yaml_node_t *vn)
{
    const struct ssl_key_spec *k = &ssl_config_keys[i];
    const struct ssl_config_value *old = &ld->cfg->vals[i];
    char where[SSL_CONFIG_WHERE_MAX];
    where_at(where, ld, kn);
    if (old->load_id == ld->load_id)
        return ssl_error_set(ld->err, SSL_E_USAGE, "%s: key '%s' given twice (first at line %zu)",
                             where, k->key, old->line);
    struct ssl_config_value nv = {0};
    enum ssl_status st;
    if (vn->type == YAML_SCALAR_NODE) {
        st = check_no_nul(ld, vn, k->key);
        if (st == SSL_OK) st = parse_scalar(k, is_null(vn) ? "" : scalar_text(vn), where, &nv, ld->err);
    } else if (vn->type == YAML_SEQUENCE_NODE &&
               (k->type == SSL_KEY_INT_LIST || k->type == SSL_KEY_FLOAT_LIST)) {
        st = parse_list_node(ld, k, vn, &nv);
    } else {
        st = ssl_error_set(ld->err, SSL_E_USAGE, "%s: %s: expected %s, got %s", where, k->key,
                           k->type == SSL_KEY_ENUM ? k->choices : expected_text(k->type), node_kind(vn));
    }
    if (st != SSL_OK) {
        value_clear(&nv);
        return st;
    }
    value_replace(ld->cfg, i, &nv, ld->name, node_line(kn), ld->load_id);
    return SSL_OK;
}

static enum ssl_status walk_mapping(const struct ssl_config_load *ld, const yaml_node_t *map,
                                    char *path, size_t len);

/* One pair whose dotted key is path[0..len): a key, a group to descend into, or an error. */
static enum ssl_status walk_entry(const struct ssl_config_load *ld, char *path, size_t len,
                                  const yaml_node_t *kn, const yaml_node_t *vn)
{
    int i = find_key(path);
    if (i >= 0) return set_from_node(ld, i, kn, vn);
    int g = find_group(path, len);
    bool has_pairs = vn->type == YAML_MAPPING_NODE &&
                     vn->data.mapping.pairs.top > vn->data.mapping.pairs.start;
    if (vn->type == YAML_MAPPING_NODE && (g >= 0 || has_pairs)) {
        /* An unknown group is descended too: its first leaf names the whole typo. */
        path[len] = '.';
        path[len + 1] = '\0';
        return walk_mapping(ld, vn, path, len + 1);
    }
    char where[SSL_CONFIG_WHERE_MAX];
    where_at(where, ld, kn);
    if (g >= 0 && is_null(vn)) return SSL_OK; /* every key of the group commented out */
    if (g >= 0)
        return ssl_error_set(ld->err, SSL_E_USAGE,
                             "%s: %s: expected a mapping (a group of keys like '%s'), got %s", where,
                             path, ssl_config_keys[g].key, node_kind(vn));
    return unknown_key(ld->err, where, path);
}

/* The key of pair p: a scalar, not given before in this mapping, short enough to extend. */
static enum ssl_status check_pair_key(const struct ssl_config_load *ld, const yaml_node_t *map,
                                      const yaml_node_pair_t *p, const char *path, size_t len)
{
    const yaml_node_t *kn = node_at(ld, p->key);
    if (kn->type != YAML_SCALAR_NODE)
        return ssl_error_set(ld->err, SSL_E_USAGE, "%s:%zu: keys must be names, got %s",
                             ld->name, node_line(kn), node_kind(kn));
    const char *name = scalar_text(kn);
    size_t n = kn->data.scalar.length;
    if (strlen(name) != n)
        return ssl_error_set(ld->err, SSL_E_USAGE, "%s:%zu: key '%.*s%s' contains a NUL character",
                             ld->name, node_line(kn), (int)len, path, name);
    if (len + n + 2 > SSL_CONFIG_KEY_MAX) /* also where an alias refers to its own mapping */
        return ssl_error_set(ld->err, SSL_E_USAGE, "%s:%zu: unknown key '%.60s...' (longer than %d bytes)",
                             ld->name, node_line(kn), path, SSL_CONFIG_KEY_MAX - 2);
    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
        const yaml_node_t *prev = node_at(ld, q->key);
        if (prev->type == YAML_SCALAR_NODE && strcmp(scalar_text(prev), name) == 0)
            return ssl_error_set(ld->err, SSL_E_USAGE, "%s:%zu: key '%.*s%s' given twice (first at line %zu)",
                                 ld->name, node_line(kn), (int)len, path, name, node_line(prev));
    }
    return SSL_OK;
}

/* Flattens map under path[0..len) (empty or ending in '.'); path has SSL_CONFIG_KEY_MAX bytes. */
static enum ssl_status walk_mapping(const struct ssl_config_load *ld, const yaml_node_t *map,
                                    char *path, size_t len)
{
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        enum ssl_status st = check_pair_key(ld, map, p, path, len);
        if (st != SSL_OK) return st;
        const yaml_node_t *kn = node_at(ld, p->key);
        memcpy(path + len, scalar_text(kn), kn->data.scalar.length + 1);
        st = walk_entry(ld, path, len + kn->data.scalar.length, kn, node_at(ld, p->value));
        if (st != SSL_OK) return st;
    }
    return SSL_OK;
}

static enum ssl_status walk_root(const struct ssl_config_load *ld)
{
    const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    if (root == NULL || is_null(root)) return SSL_OK; /* an empty file sets nothing */
    if (root->type != YAML_MAPPING_NODE)
        return ssl_error_set(ld->err, SSL_E_USAGE,
                             "%s:%zu: expected a mapping of keys at the top level, got %s", ld->name,
                             node_line(root), node_kind(root));
    char path[SSL_CONFIG_KEY_MAX] = "";
    return walk_mapping(ld, root, path, 0);
}

static size_t line_of_offset(const char *text, size_t len, size_t offset)
{
    size_t line = 1;
    for (size_t i = 0; i < offset && i < len; i++) line += text[i] == '\n';
    return line;
}

static enum ssl_status yaml_failure(const yaml_parser_t *p, const char *name, const char *text,
                                    size_t len, struct ssl_error *err)
{
    SSL_CHECKF(p->error != YAML_MEMORY_ERROR, "config: out of memory parsing %s", name);
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->error == YAML_READER_ERROR)
        return ssl_error_set(err, SSL_E_USAGE, "%s:%zu: not YAML text: %s at byte %zu", name,
                             line_of_offset(text, len, p->problem_offset), problem, p->problem_offset);
    char context[256] = "";
    if (p->context)
        snprintf(context, sizeof context, " (%s at line %zu)", p->context, p->context_mark.line + 1);
    return ssl_error_set(err, SSL_E_USAGE, "%s:%zu:%zu: YAML syntax error: %s%s", name,
                         p->problem_mark.line + 1, p->problem_mark.column + 1, problem, context);
}

/* A job file is one mapping; a second document (after ---) would be silently ignored. */
static enum ssl_status check_single_document(yaml_parser_t *p, const char *name, const char *text,
                                             size_t len, struct ssl_error *err)
{
    yaml_document_t next;
    if (!yaml_parser_load(p, &next)) return yaml_failure(p, name, text, len, err);
    const yaml_node_t *root = yaml_document_get_root_node(&next);
    enum ssl_status st = SSL_OK;
    if (root != NULL)
        st = ssl_error_set(err, SSL_E_USAGE, "%s:%zu: a second YAML document; a job file holds one mapping",
                           name, node_line(root));
    yaml_document_delete(&next);
    return st;
}

static enum ssl_status load_text(struct ssl_config *cfg, const char *name, const char *text,
                                 size_t len, struct ssl_error *err)
{
    struct ssl_config_load ld = {.cfg = cfg, .name = add_source(cfg, name), .err = err};
    ld.load_id = cfg->n_sources;
    yaml_parser_t parser;
    yaml_document_t doc;
    SSL_CHECKF(yaml_parser_initialize(&parser), "config: out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    enum ssl_status st;
    if (!yaml_parser_load(&parser, &doc)) {
        st = yaml_failure(&parser, ld.name, text, len, err);
    } else {
        ld.doc = &doc;
        st = walk_root(&ld);
        if (st == SSL_OK) st = check_single_document(&parser, ld.name, text, len, err);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return st;
}

static enum ssl_status read_all(const char *path, char **text, size_t *len, struct ssl_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = xcalloc(cap, 1);
    while ((n += fread(buf + n, 1, cap - n, f)) == cap && cap < SSL_CONFIG_FILE_MAX) {
        char *grown = realloc(buf, 2 * cap);
        SSL_CHECKF(grown != NULL, "config: out of memory");
        buf = grown;
        cap *= 2;
    }
    enum ssl_status st = SSL_OK;
    if (ferror(f)) st = ssl_error_set(err, SSL_E_USAGE, "%s: cannot read: %s", path, strerror(errno));
    else if (n == cap) st = ssl_error_set(err, SSL_E_USAGE, "%s: larger than %d MiB; not a job file",
                                          path, SSL_CONFIG_FILE_MAX >> 20);
    fclose(f);
    if (st != SSL_OK) {
        free(buf);
        return st;
    }
    *text = buf;
    *len = n;
    return SSL_OK;
}

enum ssl_status ssl_config_load_file(struct ssl_config *cfg, const char *path, struct ssl_error *err)
{
    char *text = NULL;
    size_t len = 0;
    enum ssl_status st = read_all(path, &text, &len, err);
    if (st != SSL_OK) return st;
    st = load_text(cfg, path, text, len, err);
    free(text);
    return st;
}

enum ssl_status ssl_config_parse_serialized(struct ssl_config *cfg, const char *text,
                                            const char *origin, struct ssl_error *err)
{
    return load_text(cfg, origin, text, strlen(text), err);
}

/* ---- command line ---- */

enum ssl_status ssl_config_set_arg(struct ssl_config *cfg, const char *arg, struct ssl_error *err)
{
    const char *where = "command line", *eq = strchr(arg, '=');
    if (eq == NULL || eq == arg)
        return ssl_error_set(err, SSL_E_USAGE, "%s: '%.200s' is not key=value", where, arg);
    size_t len = (size_t)(eq - arg);
    char key[SSL_CONFIG_KEY_MAX];
    snprintf(key, sizeof key, "%.*s", (int)min_size(len, sizeof key - 1), arg);
    int i = len < sizeof key ? find_key(key) : -1;
    if (i < 0 && len < sizeof key && find_group(key, len) >= 0)
        return ssl_error_set(err, SSL_E_USAGE, "%s: '%s' is a group of keys, not a key (like '%s')",
                             where, key, ssl_config_keys[find_group(key, len)].key);
    if (i < 0) return unknown_key(err, where, key);
    struct ssl_config_value nv = {0};
    enum ssl_status st = parse_scalar(&ssl_config_keys[i], eq + 1, where, &nv, err);
    if (st != SSL_OK) {
        value_clear(&nv);
        return st;
    }
    value_replace(cfg, i, &nv, where, 0, 0);
    return SSL_OK;
}

/* ---- getters ---- */

static const struct ssl_config_value *get(const struct ssl_config *cfg, const char *key,
                                          enum ssl_key_type type, enum ssl_key_type alt)
{
    SSL_CHECKF(cfg != NULL && key != NULL, "config getter called with a NULL argument");
    int i = find_key(key);
    SSL_CHECKF(i >= 0, "config key '%s' is not in the table (io/config_keys.c)", key);
    enum ssl_key_type t = ssl_config_keys[i].type;
    SSL_CHECKF(t == type || t == alt, "config key '%s' is a %s, read as a %s", key, type_name(t),
               type_name(type));
    return &cfg->vals[i];
}

int64_t ssl_config_int(const struct ssl_config *cfg, const char *key)
{
    return get(cfg, key, SSL_KEY_INT, SSL_KEY_INT)->u.i;
}

double ssl_config_float(const struct ssl_config *cfg, const char *key)
{
    return get(cfg, key, SSL_KEY_FLOAT, SSL_KEY_FLOAT)->u.f;
}

bool ssl_config_bool(const struct ssl_config *cfg, const char *key)
{
    return get(cfg, key, SSL_KEY_BOOL, SSL_KEY_BOOL)->u.b;
}

const char *ssl_config_str(const struct ssl_config *cfg, const char *key)
{
    return get(cfg, key, SSL_KEY_STRING, SSL_KEY_ENUM)->str;
}

int ssl_config_int_list(const struct ssl_config *cfg, const char *key, int64_t *out, int max)
{
    const struct ssl_config_value *v = get(cfg, key, SSL_KEY_INT_LIST, SSL_KEY_INT_LIST);
    SSL_CHECKF(max >= 0 && (out != NULL || max == 0), "ssl_config_int_list('%s'): bad buffer", key);
    int n = v->n_list < max ? v->n_list : max;
    if (n > 0) memcpy(out, v->list, (size_t)n * sizeof *out);
    return v->n_list;
}

double ssl_config_float_at(const struct ssl_config *cfg, const char *key, int index)
{
    const struct ssl_config_value *v = get(cfg, key, SSL_KEY_FLOAT_LIST, SSL_KEY_FLOAT_LIST);
    SSL_CHECKF(index >= 0 && v->n_list >= 1, "ssl_config_float_at('%s', %d)", key, index);
    return v->flist[v->n_list == 1 ? 0 : index < v->n_list ? index : v->n_list - 1];
}

int ssl_config_list_length(const struct ssl_config *cfg, const char *key)
{
    const struct ssl_config_value *v = get(cfg, key, SSL_KEY_INT_LIST, SSL_KEY_FLOAT_LIST);
    return v->n_list;
}

/* ---- serialization ---- */

/* YAML 1.1 readers (PyYAML) take a number as a float only with a '.' and a signed exponent. */
static void emit_float(FILE *f, double x)
{
    char s[40];
    fmt_double(s, sizeof s, x);
    char *e = strchr(s, 'e');
    if (strchr(s, '.')) fputs(s, f);
    else if (e) fprintf(f, "%.*s.0%s", (int)(e - s), s, e);
    else fprintf(f, "%s.0", s);
}

/* Code points libyaml reads raw inside double quotes; line breaks and specials are escaped. */
static bool yaml_printable(uint32_t cp)
{
    if (cp < 0x80) return cp >= 0x20 && cp < 0x7F && cp != '"' && cp != '\\';
    return (cp >= 0xA0 && cp <= 0xD7FF && cp != 0x2028 && cp != 0x2029) ||
           (cp >= 0xE000 && cp <= 0xFFFD && cp != 0xFEFF) || cp >= 0x10000;
}

static void emit_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    uint32_t cp;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int n = utf8_decode(p, &cp);
        SSL_CHECKF(n > 0, "config string is not UTF-8 (a parse check is missing)");
        if (yaml_printable(cp)) fwrite(p, 1, (size_t)n, f);
        else if (cp == '"' || cp == '\\') fprintf(f, "\\%c", (char)cp);
        else if (cp <= 0xFF) fprintf(f, "\\x%02X", (unsigned)cp);
        else fprintf(f, "\\u%04X", (unsigned)cp);
        p += n;
    }
    fputc('"', f);
}

/* Other YAML readers would turn yes/no/on/off/null or numbers into non-strings. */
static bool plain_safe(const char *s)
{
    static const char *const special[] = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"};
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++)
        if (equal_nocase(s, special[i])) return false;
    bool ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_';
    for (; ok && *s; s++)
        ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
             *s == '_' || *s == '-';
    return ok;
}

static void emit_value(FILE *f, const struct ssl_key_spec *k, const struct ssl_config_value *v)
{
    switch (k->type) {
    case SSL_KEY_INT: fprintf(f, "%" PRId64, v->u.i); break;
    case SSL_KEY_FLOAT: emit_float(f, v->u.f); break;
    case SSL_KEY_BOOL: fputs(v->u.b ? "true" : "false", f); break;
    case SSL_KEY_STRING: emit_quoted(f, v->str); break;
    case SSL_KEY_ENUM:
        if (plain_safe(v->str)) fputs(v->str, f);
        else emit_quoted(f, v->str);
        break;
    case SSL_KEY_INT_LIST:
        fputc('[', f);
        for (int j = 0; j < v->n_list; j++) fprintf(f, "%s%" PRId64, j ? ", " : "", v->list[j]);
        fputc(']', f);
        break;
    case SSL_KEY_FLOAT_LIST:
        fputc('[', f);
        for (int j = 0; j < v->n_list; j++) {
            if (j) fputs(", ", f);
            emit_float(f, v->flist[j]);
        }
        fputc(']', f);
        break;
    }
}

/* A file name with a line break would end the comment early. */
static void emit_origin(FILE *f, const struct ssl_config_value *v)
{
    fputs("  # from ", f);
    for (const char *c = v->src; *c; c++) fputc((unsigned char)*c < 0x20 ? '?' : *c, f);
    if (v->line > 0) fprintf(f, ":%zu", v->line);
}

/* Every key under prefix[0..len) in table order; a subgroup is written once, where its first
 * key is, so rows appended to the end of the table still nest under their group. */
static void emit_group(FILE *f, const struct ssl_config *cfg, const char *prefix, size_t len,
                       int depth, bool with_origin)
{
    for (int i = 0; i < cfg->n_keys; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        if (strncmp(k->key, prefix, len) != 0) continue;
        const char *rest = k->key + len, *dot = strchr(rest, '.');
        if (dot == NULL) {
            fprintf(f, "%*s%s: ", 2 * depth, "", rest);
            emit_value(f, k, &cfg->vals[i]);
            if (with_origin) emit_origin(f, &cfg->vals[i]);
            fputc('\n', f);
            continue;
        }
        size_t sub_len = (size_t)(dot - k->key) + 1;
        if (find_group(k->key, sub_len - 1) != i) continue; /* written with an earlier key */
        fprintf(f, "%*s%.*s:\n", 2 * depth, "", (int)(dot - rest), rest);
        emit_group(f, cfg, k->key, sub_len, depth + 1, with_origin);
    }
}

char *ssl_config_serialize(const struct ssl_config *cfg, bool with_origin)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    SSL_CHECKF(f != NULL, "config: out of memory (open_memstream)");
    emit_group(f, cfg, "", 0, 0, with_origin);
    SSL_CHECKF(fclose(f) == 0 && text != NULL, "config: out of memory (serialize)");
    return text;
}

/* ---- help config ---- */

static const char *default_text(const struct ssl_key_spec *k) { return k->def[0] ? k->def : "\"\""; }

/* The range column; an INT_LIST range is each element's. */
static const char *range_cell(const struct ssl_key_spec *k, char *buf, size_t n)
{
    char range[160];
    snprintf(buf, n, "%s%s", range_text(k, range, sizeof range),
             k->type == SSL_KEY_INT_LIST || k->type == SSL_KEY_FLOAT_LIST ? " each" : "");
    return buf;
}

static int width(const char *s) { return (int)min_size(strlen(s), 200); }

static int max_int(int a, int b) { return a > b ? a : b; }

/* Aligned columns, a blank line between top-level groups. */
void ssl_config_print_table(FILE *out)
{
    int w_key = width("key"), w_type = width("type"), w_def = width("default"), w_range = width("range");
    char range[170];
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        w_key = max_int(w_key, width(k->key));
        w_type = max_int(w_type, width(type_name(k->type)));
        w_def = max_int(w_def, width(default_text(k)));
        w_range = max_int(w_range, width(range_cell(k, range, sizeof range)));
    }
    fprintf(out, "%-*s  %-*s  %-*s  %-*s  %s\n", w_key, "key", w_type, "type", w_def, "default",
            w_range, "range", "help");
    for (int i = 0; i < ssl_config_n_keys; i++) {
        const struct ssl_key_spec *k = &ssl_config_keys[i];
        size_t group = strcspn(k->key, ".") + 1;
        if (i > 0 && strncmp(ssl_config_keys[i - 1].key, k->key, group) != 0) fputc('\n', out);
        fprintf(out, "%-*s  %-*s  %-*s  %-*s  %s\n", w_key, k->key, w_type, type_name(k->type), w_def,
                default_text(k), w_range, range_cell(k, range, sizeof range), k->help);
    }
}
