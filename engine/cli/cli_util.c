/*
 * cli_util.c - helpers every `tsl` command shares: error messages and exit
 * codes, getopt plumbing, files, times, and opening the engine.
 *
 * Used by: engine/cli/cmd_*.c and main.c.  Needs: cli.h, the public engine API only.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------
 * Messages and exit codes
 * ---------------------------------------------------------------------- */

static void progress_erase(void);

static void vmsg(const struct cli_global *g, const char *fmt, va_list ap)
{
    progress_erase();
    fflush(stdout);
    if (g && g->cmd)
        fprintf(stderr, "%s %s: ", g->prog, g->cmd);
    else
        fprintf(stderr, "%s: ", g ? g->prog : "tsl");
    vfprintf(stderr, fmt, ap);
}

int cli_error(const struct cli_global *g, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(g, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int cli_usage_error(const struct cli_global *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg(g, fmt, ap);
    va_end(ap);
    if (g && g->cmd)
        fprintf(stderr, " (see '%s %s --help')\n", g->prog, g->cmd);
    else
        fprintf(stderr, " (see '%s --help')\n", g ? g->prog : "tsl");
    return CLI_USAGE;
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case TSL_OK:
        return CLI_OK;
    case TSL_EINVALID:
    case TSL_ENOTFOUND:
    case TSL_EPOLICY:
    case TSL_EEXISTS:
    case TSL_ELIMIT:
        return CLI_USAGE;
    default:
        return CLI_FAIL;
    }
}

int cli_engine_error(const struct cli_global *g, int rc, const char *fmt, ...)
{
    const char *detail = tsl_error_last();
    if (!detail || !detail[0])
        detail = tsl_strerror(rc);
    if (!fmt) {
        cli_error(g, 0, "%s", detail);
        return cli_exit_code(rc);
    }
    va_list ap;
    va_start(ap, fmt);
    vmsg(g, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", detail);
    return cli_exit_code(rc);
}

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */

void cli_getopt_reset(void)
{
    optind = 0; /* glibc: 0 re-initialises, including the '+'/'-' modes */
    opterr = 0;
}

int cli_getopt_error(const struct cli_global *g, int c, char **argv)
{
    const char *arg = argv[optind - 1];
    bool is_long = arg && strncmp(arg, "--", 2) == 0;
    char name[64];

    /* "--json=1" names itself; a short option is known only by optopt. */
    if (is_long) {
        size_t n = strcspn(arg, "=");
        snprintf(name, sizeof name, "%.*s", (int)(n < 60 ? n : 60), arg);
    } else {
        snprintf(name, sizeof name, "-%c", optopt ? optopt : '?');
    }
    if (c == ':')
        return cli_usage_error(g, "option '%s' needs a value", name);
    if (is_long && optopt && strchr(arg, '='))
        return cli_usage_error(g, "option '%s' takes no value", name);
    return cli_usage_error(g, "unknown option '%s'", is_long ? arg : name);
}

int cli_set_format(const struct cli_global *g, tsl_format *fmt, tsl_format want)
{
    if (*fmt != TSL_FORMAT_TEXT && *fmt != want)
        return cli_usage_error(g, "give one of --json and --csv, not both");
    *fmt = want;
    return CLI_OK;
}

int cli_list_add(const struct cli_global *g, const char *opt, char *arg, const char **items,
                 size_t *n, size_t max)
{
    char *p = arg;
    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (!p[0])
            return cli_usage_error(g, "%s needs a value: an empty item in \"%s\"", opt, arg);
        if (*n == max)
            return cli_error(g, CLI_USAGE, "too many %s: a request carries at most %zu", opt,
                             max);
        items[(*n)++] = p;
        if (!comma)
            return CLI_OK;
        p = comma + 1;
    }
}

int cli_require_db(const struct cli_global *g)
{
    if (g->db)
        return CLI_OK;
    return cli_error(g, CLI_USAGE, "no inventory store: give --db FILE (%s --db FILE %s ...)",
                     g->prog, g->cmd);
}

int cli_store_open_error(const struct cli_global *g, int rc)
{
    const char *detail = tsl_error_last();
    int code = detail && strstr(detail, g->db) ? cli_engine_error(g, rc, NULL)
                                               : cli_engine_error(g, rc, "store %s", g->db);
    return rc == TSL_ESTORE ? CLI_USAGE : code;
}

int cli_require_store_file(const struct cli_global *g)
{
    struct stat st;
    if (stat(g->db, &st) == 0)
        return S_ISDIR(st.st_mode)
                   ? cli_error(g, CLI_USAGE, "--db %s is a directory, not a store file", g->db)
                   : CLI_OK;
    if (errno == ENOENT)
        return cli_error(g, CLI_USAGE, "no store at %s: create it with `%s --db %s import "
                                       "FILE.json`", g->db, g->prog, g->db);
    return cli_error(g, CLI_USAGE, "cannot use store %s: %s", g->db, strerror(errno));
}

/* ------------------------------------------------------------------------
 * Files, numbers, times
 * ---------------------------------------------------------------------- */

int cli_read_file(const struct cli_global *g, const char *path, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cli_error(g, CLI_USAGE, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return cli_error(g, CLI_FAIL, "out of memory reading %s", path);
    }
    for (;;) {
        if (cap - n < 2) {
            char *nb = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!nb) {
                free(buf);
                fclose(f);
                return cli_error(g, CLI_FAIL, "out of memory reading %s", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        int e = errno;
        free(buf);
        fclose(f);
        return cli_error(g, CLI_USAGE, "cannot read %s: %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return CLI_OK;
}

int cli_parse_uint(const struct cli_global *g, const char *opt, const char *text,
                   uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!text[0] || text[0] == '-' || text[0] == '+' || text[0] == ' ')
        goto bad;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || v > max)
        goto bad;
    *out = v;
    return CLI_OK;
bad:
    return cli_usage_error(g, "%s \"%s\" is not a whole number from 0 to %" PRIu64, opt, text,
                           max);
}

/* Reads exactly `n` digits. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    *out = v;
    return true;
}

int cli_parse_time(const struct cli_global *g, const char *opt, const char *text,
                   int64_t *out)
{
    const char *p = text;
    int Y, M, D, h = 0, m = 0, s = 0;

    /* Unix seconds */
    if (text[0] >= '0' && text[0] <= '9' && strspn(text, "0123456789") == strlen(text)) {
        uint64_t v;
        if (strlen(text) > 12 || cli_parse_uint(g, opt, text, INT64_MAX, &v) != CLI_OK)
            goto bad;
        *out = (int64_t)v;
        return CLI_OK;
    }
    /* ISO 8601, UTC */
    if (!digits(&p, 4, &Y) || *p++ != '-' || !digits(&p, 2, &M) || *p++ != '-' ||
        !digits(&p, 2, &D))
        goto bad;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &m))
            goto bad;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &s))
                goto bad;
        }
    }
    if (*p == 'Z')
        p++;
    if (*p || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || s > 60 || Y < 1970)
        goto bad;
    struct tm tm = {0};
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = s;
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || tm.tm_mday != D) /* timegm normalises 31 Feb */
        goto bad;
    *out = (int64_t)t;
    return CLI_OK;
bad:
    return cli_usage_error(g, "%s \"%s\" is not a time: give Unix seconds or "
                              "YYYY-MM-DDTHH:MM:SSZ (UTC)", opt, text);
}

void cli_format_time(char *dst, size_t len, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "%" PRId64, t);
}

/* ------------------------------------------------------------------------
 * The engine
 * ---------------------------------------------------------------------- */

int cli_engine_open(const struct cli_global *g, struct cli_engine *e, const char *policy_path)
{
    int rc;
    memset(e, 0, sizeof *e);

    if ((rc = cli_require_db(g)) != CLI_OK)
        return rc;
    if ((rc = cli_require_store_file(g)) != CLI_OK)
        return rc;
    if ((rc = tsl_store_open(&e->store, g->db, TSL_STORE_READONLY)) < 0) {
        rc = cli_store_open_error(g, rc);
        goto fail;
    }
    if ((rc = tsl_snapshot_load(&e->snap, e->store, NULL)) < 0) {
        rc = cli_engine_error(g, rc, "cannot load the inventory from %s", g->db);
        goto fail;
    }
    if (policy_path) {
        char *src;
        size_t len;
        if ((rc = cli_read_file(g, policy_path, &src, &len)) != CLI_OK)
            goto fail;
        rc = tsl_policy_compile(&e->policy, src, len, policy_path);
        free(src);
        if (rc < 0) {
            rc = cli_engine_error(g, rc, "policy %s does not compile", policy_path);
            goto fail;
        }
    }
    /* Without --policy: the rollout in force (`tsl policy activate`), staged
     * sites included, or the default logic when no version is active. */
    if (!policy_path) {
        if ((rc = tsl_rollout_plan(&e->plan, e->store, e->snap)) < 0) {
            rc = cli_engine_error(g, rc, "cannot build the policy in force");
            goto fail;
        }
    } else if ((rc = tsl_plan_new(&e->plan, e->snap, e->policy)) < 0) {
        rc = cli_engine_error(g, rc, "cannot bind the policy to the inventory");
        goto fail;
    }
    if ((rc = tsl_worker_new(&e->worker)) < 0) {
        rc = cli_engine_error(g, rc, "cannot create a worker");
        goto fail;
    }
    return CLI_OK;
fail:
    cli_engine_close(e);
    return rc;
}

void cli_engine_close(struct cli_engine *e)
{
    tsl_worker_free(e->worker);
    tsl_plan_free(e->plan);
    tsl_policy_free(e->policy);
    tsl_snapshot_free(e->snap);
    tsl_store_free(e->store);
    memset(e, 0, sizeof *e);
}

int cli_write_buf(const struct cli_global *g, const tsl_buf *b)
{
    if (b->len && fwrite(b->ptr, 1, b->len, stdout) != b->len)
        return cli_error(g, CLI_FAIL, "cannot write output: %s", strerror(errno));
    if (fflush(stdout) != 0)
        return cli_error(g, CLI_FAIL, "cannot write output: %s", strerror(errno));
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * The data directory: policies/demo and policies/examples
 * ---------------------------------------------------------------------- */

static bool has_demo(const char *dir)
{
    char path[4200];
    struct stat st;
    int n = snprintf(path, sizeof path, "%s/policies/demo/estate.json", dir);
    return n > 0 && (size_t)n < sizeof path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

const char *cli_data_dir(void)
{
    static char found[4096];
    char exe[4096];

    if (found[0])
        return found;
#ifdef TSL_DATA_REL
    /* Installed: share/tsl beside the bin/ this binary runs from, wherever
     * the package was installed (the prefix need not be the built one). */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            char rel[4200];
            int m = snprintf(rel, sizeof rel, "%s/%s", exe, TSL_DATA_REL);
            /* realpath: messages name /usr/share/tsl, not /usr/bin/../share/tsl */
            if (m > 0 && (size_t)m < sizeof rel && has_demo(rel) && realpath(rel, found))
                return found;
        }
    }
#endif
    /* A build tree: the sources it was built from. */
#ifdef TSL_SOURCE_DIR
    if (has_demo(TSL_SOURCE_DIR)) {
        snprintf(found, sizeof found, "%s", TSL_SOURCE_DIR);
        return found;
    }
#endif
#ifdef TSL_DATA_DIR
    if (has_demo(TSL_DATA_DIR)) {
        snprintf(found, sizeof found, "%s", TSL_DATA_DIR);
        return found;
    }
#endif
    found[0] = '\0';
    return NULL;
}

/* ------------------------------------------------------------------------
 * Progress on a terminal
 * ---------------------------------------------------------------------- */

/* Work shorter than this shows nothing; the line is redrawn at most this
 * often. */
#define PROGRESS_AFTER_NS 300000000LL
#define PROGRESS_EVERY_NS 100000000LL

static struct {
    const struct cli_global *g;
    const char *what;  /* the work under way, NULL between works */
    int64_t start, last;
    bool shown;        /* a line is on the terminal */
} progress;

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void progress_erase(void)
{
    if (progress.shown) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        progress.shown = false;
    }
}

static void progress_draw(void *ud, const char *what, uint64_t done, uint64_t total)
{
    int64_t now = mono_ns();
    (void)ud;
    if (!progress.what || done == 0 || strcmp(progress.what, what) != 0) {
        progress_erase();
        progress.what = what;
        progress.start = now;
        progress.last = 0;
    }
    if (done >= total) {
        progress_erase();
        progress.what = NULL;
        return;
    }
    if (now - progress.start < PROGRESS_AFTER_NS || now - progress.last < PROGRESS_EVERY_NS)
        return;
    progress.last = now;
    progress.shown = true;
    fprintf(stderr, "\r%s %s: %s %" PRIu64 " of %" PRIu64 " (%u%%)\033[K", progress.g->prog,
            progress.g->cmd ? progress.g->cmd : "", what, done, total,
            (unsigned)(done * 100 / total));
    fflush(stderr);
}

void cli_progress_start(const struct cli_global *g)
{
    /* on a pipe or in a file: nothing, the output stays clean */
    if (!isatty(STDERR_FILENO))
        return;
    progress.g = g;
    progress.what = NULL;
    tsl_progress_set(progress_draw, NULL);
}

void cli_progress_stop(void)
{
    tsl_progress_set(NULL, NULL);
    progress_erase();
}
