/* run_dir.c: creating, locking and filling a run directory (run_dir.h). */
#define _DEFAULT_SOURCE /* flock() */
#include "run_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkdir -p for one path; 0 or errno. */
static int make_dirs(const char *path)
{
    char buf[SSL_RUN_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return errno;
        *p = '/';
    }
    return mkdir(buf, 0777) != 0 && errno != EEXIST ? errno : 0;
}

static void run_name(char *out, size_t n, const struct ssl_config *cfg, const char *job_path)
{
    const char *name = ssl_config_str(cfg, "run.name");
    if (name[0]) {
        snprintf(out, n, "%s", name);
        return;
    }
    const char *base = job_path ? strrchr(job_path, '/') : NULL;
    base = base ? base + 1 : job_path;
    if (base == NULL || !base[0]) {
        snprintf(out, n, "run");
        return;
    }
    snprintf(out, n, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = '\0';
}

/* Rank 0's part: directories, the lock, config.yaml, metrics.jsonl. */
static enum ssl_status open_on_rank0(struct ssl_run_dir *rd, const struct ssl_config *cfg,
                                     struct ssl_error *err)
{
    int e = make_dirs(rd->ckpt);
    if (e) return ssl_error_set(err, SSL_E_OTHER, "%s: cannot create the run directory: %s", rd->ckpt, strerror(e));
    char p[SSL_RUN_PATH_MAX + 32];
    snprintf(p, sizeof p, "%s/LOCK", rd->path);
    rd->lock_fd = open(p, O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (rd->lock_fd < 0) return ssl_error_set(err, SSL_E_OTHER, "%s: cannot open: %s", p, strerror(errno));
    if (flock(rd->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return ssl_error_set(err, SSL_E_USAGE,
                             "%s is in use by another run (LOCK is held); choose another run.name",
                             rd->path);
    /* the pid, for a user wondering who holds it */
    if (ftruncate(rd->lock_fd, 0) == 0) dprintf(rd->lock_fd, "%ld\n", (long)getpid());
    snprintf(p, sizeof p, "%s/REQUEUE", rd->path);
    (void)unlink(p);
    snprintf(p, sizeof p, "%s/config.yaml", rd->path);
    FILE *f = fopen(p, "w");
    char *text = ssl_config_serialize(cfg, true);
    bool ok = f && text && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = false;
    free(text);
    if (!ok) return ssl_error_set(err, SSL_E_OTHER, "%s: cannot write", p);
    snprintf(p, sizeof p, "%s/metrics.jsonl", rd->path);
    rd->metrics = fopen(p, "a");
    if (!rd->metrics) return ssl_error_set(err, SSL_E_OTHER, "%s: cannot open for appending: %s", p, strerror(errno));
    return SSL_OK;
}

enum ssl_status ssl_run_dir_open(struct ssl_run_dir *rd, const struct ssl_config *cfg,
                                 const char *job_path, const struct ssl_comm *comm,
                                 struct ssl_error *err)
{
    memset(rd, 0, sizeof *rd);
    rd->lock_fd = -1;
    char name[1024];
    run_name(name, sizeof name, cfg, job_path);
    int n = snprintf(rd->path, sizeof rd->path, "%s/%s", ssl_config_str(cfg, "run.dir"), name);
    int m = snprintf(rd->ckpt, sizeof rd->ckpt, "%s/checkpoints", rd->path);
    enum ssl_status rc = SSL_OK;
    if (n < 0 || m < 0 || (size_t)m >= sizeof rd->ckpt)
        rc = ssl_error_set(err, SSL_E_USAGE, "run.dir/run.name: the path is too long");
    else if (comm->rank == 0)
        rc = open_on_rank0(rd, cfg, err);
    int status = (int)rc;
    MPI_Bcast(&status, 1, MPI_INT, 0, comm->world);
    if (status && !rc) {
        rc = ssl_error_set(err, (enum ssl_status)status, "rank 0 could not open the run directory %s", rd->path);
    }
    return rc;
}

void ssl_run_dir_mark_requeue(const struct ssl_run_dir *rd, const char *why,
                              const struct ssl_comm *comm)
{
    if (comm->rank != 0) return;
    char p[SSL_RUN_PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/REQUEUE", rd->path);
    FILE *f = fopen(p, "w");
    if (f == NULL) return; /* the exit status 85 still says it */
    fprintf(f, "%s\n", why);
    fclose(f);
}

void ssl_run_dir_close(struct ssl_run_dir *rd)
{
    if (rd->metrics) fclose(rd->metrics);
    if (rd->lock_fd >= 0) close(rd->lock_fd); /* releases the flock */
    rd->metrics = NULL;
    rd->lock_fd = -1;
}
