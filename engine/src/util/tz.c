/*
 * tz.c - time zones for import (see tz.h): fixed offsets, and named zones
 * read from the system's compiled tz database (TZif files, RFC 8536).
 *
 * Only the transition times and their UTC offsets are kept.  Times past
 * the file's last transition keep its offset: Debian's tzdata ships
 * "fat" files whose transitions run to 2037, far beyond any export.
 */
#include "tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TZ_DIR "/usr/share/zoneinfo/"
#define TZ_FILE_MAX (1u << 20)

struct tsl_tz {
    char name[64];
    int64_t *trans;      /* transition times, ascending */
    int32_t *after;      /* offset in force from trans[i] */
    size_t ntrans;
    int32_t before;      /* offset before the first transition (a fixed zone's offset) */
};

static int64_t be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    if (n == 4)
        return (int32_t)(uint32_t)v;
    return (int64_t)v;
}

/* "+01:00", "-0530", "+1", "UTC+2", "GMT-03:30" -> seconds east of UTC. */
static bool parse_offset(const char *s, int32_t *out)
{
    int h = 0, m = 0, nd = 0, sign;

    if (!strncmp(s, "UTC", 3) || !strncmp(s, "GMT", 3))
        s += 3;
    if (*s != '+' && *s != '-')
        return false;
    sign = *s++ == '-' ? -1 : 1;
    while (*s >= '0' && *s <= '9' && nd < 2) {
        h = h * 10 + (*s++ - '0');
        nd++;
    }
    if (!nd)
        return false;
    if (*s == ':')
        s++;
    if (*s) {
        if (!(s[0] >= '0' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9') || s[2])
            return false;
        m = (s[0] - '0') * 10 + (s[1] - '0');
    }
    if (h > 18)
        return false;
    *out = sign * (h * 3600 + m * 60);
    return true;
}

/* Zone names are paths under TZ_DIR: letters, digits, '_', '-', '+', '/'
 * between components, never "..", never absolute. */
static bool valid_zone_name(const char *s)
{
    size_t n = strlen(s);

    if (!n || n > 60 || s[0] == '/' || s[n - 1] == '/' || strstr(s, "..") || strstr(s, "//"))
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '+' || c == '/'))
            return false;
    }
    return true;
}

/* Reads the 64-bit (version 2+) data block of a TZif file. */
static int load_tzif(tsl_tz *tz, const unsigned char *d, size_t len, const char *spec)
{
    size_t off = 0, v1, cnt[6], need;
    int err = 0;

    for (int pass = 0; pass < 2; pass++) {
        if (len - off < 44 || memcmp(d + off, "TZif", 4) != 0)
            goto bad;
        for (int i = 0; i < 6; i++)
            cnt[i] = (size_t)(uint32_t)be(d + off + 20 + 4 * i, 4);
        /* isut, isstd, leap, time, type, char */
        if (cnt[3] > 100000 || cnt[4] == 0 || cnt[4] > 256 || cnt[5] > 100000 ||
            cnt[2] > 100000)
            goto bad;
        if (pass == 0) {
            if (d[off + 4] < '2')
                goto bad; /* version 1 has no 64-bit data: not shipped since 2005 */
            v1 = cnt[3] * 5 + cnt[4] * 6 + cnt[5] + cnt[2] * 8 + cnt[1] + cnt[0];
            if (len - off - 44 < v1)
                goto bad;
            off += 44 + v1;
        }
    }
    need = cnt[3] * 9 + cnt[4] * 6;
    if (len - off - 44 < need)
        goto bad;
    {
        const unsigned char *times = d + off + 44, *idx = times + cnt[3] * 8,
                            *types = idx + cnt[3];
        size_t first_std = 0;

        for (size_t i = 0; i < cnt[4]; i++)
            if (!types[i * 6 + 4]) {
                first_std = i;
                break;
            }
        tz->before = (int32_t)be(types + first_std * 6, 4);
        if (cnt[3]) {
            tz->trans = malloc(cnt[3] * sizeof *tz->trans);
            tz->after = malloc(cnt[3] * sizeof *tz->after);
            if (!tz->trans || !tz->after)
                return tsl_oom();
        }
        for (size_t i = 0; i < cnt[3]; i++) {
            if (idx[i] >= cnt[4] || (i && be(times + i * 8, 8) <= tz->trans[i - 1]))
                goto bad;
            tz->trans[i] = be(times + i * 8, 8);
            tz->after[i] = (int32_t)be(types + (size_t)idx[i] * 6, 4);
        }
        tz->ntrans = cnt[3];
    }
    return err;
bad:
    return tsl_seterr(TSL_EINVALID, "time zone \"%s\": %s%s is not a valid tz database file",
                      spec, TZ_DIR, spec);
}

int tsl_tz_open(tsl_tz **out, const char *spec)
{
    tsl_tz *tz = NULL;
    char path[128];
    char *data = NULL;
    size_t len;
    int err = 0;

    *out = NULL;
    if (!(tz = calloc(1, sizeof *tz)))
        return tsl_oom();
    if (!spec || !*spec || !strcmp(spec, "UTC") || !strcmp(spec, "Z") || !strcmp(spec, "utc")) {
        snprintf(tz->name, sizeof tz->name, "UTC");
        goto ok;
    }
    snprintf(tz->name, sizeof tz->name, "%.60s", spec);
    if (parse_offset(spec, &tz->before))
        goto ok;
    if (!valid_zone_name(spec)) {
        err = tsl_seterr(TSL_EINVALID,
                         "time zone \"%.80s\" is neither an offset like +01:00 nor a zone "
                         "name like Europe/London",
                         spec);
        goto done;
    }
    snprintf(path, sizeof path, "%s%s", TZ_DIR, spec);
    if ((err = tsl_file_read(&data, &len, path, TZ_FILE_MAX)) < 0) {
        err = tsl_seterr(TSL_EINVALID,
                         "unknown time zone \"%s\" (no %s; zone names look like "
                         "Europe/London, offsets like +01:00)",
                         spec, path);
        goto done;
    }
    if ((err = load_tzif(tz, (const unsigned char *)data, len, spec)) < 0)
        goto done;
ok:
    *out = tz;
    tz = NULL;
done:
    free(data);
    tsl_tz_free(tz);
    return err;
}

void tsl_tz_free(tsl_tz *tz)
{
    if (!tz)
        return;
    free(tz->trans);
    free(tz->after);
    free(tz);
}

const char *tsl_tz_name(const tsl_tz *tz)
{
    return tz ? tz->name : "UTC";
}

/* The offset in force at Unix time t. */
static int32_t offset_at(const tsl_tz *tz, int64_t t)
{
    size_t lo = 0, hi = tz->ntrans;

    if (!tz->ntrans || t < tz->trans[0])
        return tz->before;
    while (hi - lo > 1) { /* the last transition <= t */
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return tz->after[lo];
}

int64_t tsl_tz_to_utc(const tsl_tz *tz, int64_t local)
{
    /* Offset changes are months apart: the offsets a day either side are
     * the only ones this local time can have been written in. */
    int32_t early, late;
    bool early_ok, late_ok;

    if (!tz)
        return local;
    early = offset_at(tz, local - 86400);
    late = offset_at(tz, local + 86400);
    early_ok = offset_at(tz, local - early) == early;
    late_ok = offset_at(tz, local - late) == late;
    if (early_ok && late_ok)
        return local - early > local - late ? local - late : local - early;
    if (late_ok)
        return local - late;
    return local - early; /* valid, or skipped: the offset before the change */
}
