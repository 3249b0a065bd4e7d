/*
 * file.c - reading a whole file into memory, the one way the engine does
 * it: CSV import, policy test files, the broker's --policy file.
 *
 * Used by: import_csv.c, policy_test.c, engine/broker/bpolicy.c.
 * Needs: common.h.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tsl_read_file(char **out, size_t *len, const char *path, size_t max)
{
    FILE *f = NULL;
    char *buf = NULL, *nb;
    size_t n = 0, cap = 0, got;
    int err = 0;

    *out = NULL;
    *len = 0;
    if (!(f = fopen(path, "rb"))) {
        char why[128] = "";
        int e = errno;
        strerror_r(e, why, sizeof why);
        return tsl_seterr(e == ENOENT ? TSL_ENOTFOUND : TSL_ERROR, "cannot open \"%s\": %s",
                          path, why);
    }
    for (;;) {
        if (cap - n < 4096) {
            if (cap >= max) {
                err = tsl_seterr(TSL_ELIMIT, "\"%s\" is larger than %zu bytes", path, max);
                goto done;
            }
            cap = cap ? cap * 2 : 8192;
            if (cap > max)
                cap = max;
            /* +1: room for the terminating NUL parsers rely on */
            if (!(nb = realloc(buf, cap + 1))) {
                err = tsl_oom();
                goto done;
            }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
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
    *len = n;
    buf = NULL;
done:
    fclose(f);
    free(buf);
    return err;
}
