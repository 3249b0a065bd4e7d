/*
 * file.c - reads a whole file into memory, with a size ceiling: the one
 * reader behind policy files, policy tests, CSV exports and the
 * simulator's scenarios and policies.
 *
 * Used by: import_csv.c, policy_test.c, engine/sim.  Needs: common.h.
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
    size_t cap = 0, n = 0;
    int err = 0;

    *out = NULL;
    if (len)
        *len = 0;
    if (!(f = fopen(path, "rb"))) {
        int e = errno;
        return tsl_seterr(e == ENOENT ? TSL_ENOTFOUND : TSL_ERROR, "cannot open \"%s\": %s",
                          path, strerror(e));
    }
    for (;;) {
        if (n == cap) {
            if (cap > max) { /* max + 1 bytes read: too large */
                err = tsl_seterr(TSL_ELIMIT, "\"%s\" is larger than %zu bytes", path, max);
                goto done;
            }
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > max + 1)
                ncap = max + 1;
            char *nb = realloc(buf, ncap + 1); /* +1: the terminating NUL */
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
        err = tsl_seterr(TSL_ERROR, "error reading \"%s\"", path);
        goto done;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    buf = NULL;
done:
    free(buf);
    fclose(f);
    return err;
}
