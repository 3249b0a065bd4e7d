/*
 * file.c - reading a whole file into memory, the one way the engine does
 * it: the CSV importer, the policy test runner, the broker (--policy
 * FILE) and the simulator (scenarios, policies it uploads) all read
 * through tsl_file_read.
 *
 * Used by: import_csv.c, policy_test.c, engine/broker/bpolicy.c,
 * engine/sim/scenario.c, engine/sim/sim.c.
 * Needs: common.h.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tsl_file_read(char **out, size_t *len, const char *path, size_t max)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    int err = 0;

    TSL_ARG(out && len && path);
    *out = NULL;
    *len = 0;
    if (!(f = fopen(path, "rb"))) {
        char why[128] = "";
        int e = errno;
        strerror_r(e, why, sizeof why);
        err = tsl_seterr(e == ENOENT ? TSL_ENOTFOUND : TSL_ERROR, "cannot open \"%s\": %s", path,
                         why);
        goto done;
    }
    for (;;) {
        if (cap - n < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (n > max) {
                err = tsl_seterr(TSL_ELIMIT, "\"%s\" is larger than %zu bytes", path, max);
                goto done;
            }
            /* +1: room for the terminating NUL the parsers rely on */
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                err = tsl_oom();
                goto done;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        err = tsl_seterr(TSL_ERROR, "cannot read \"%s\"", path);
        goto done;
    }
    if (n > max) {
        err = tsl_seterr(TSL_ELIMIT, "\"%s\" is larger than %zu bytes", path, max);
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    buf = NULL;

done:
    if (f)
        fclose(f);
    free(buf);
    return err;
}
