/*
 * import_time.c - times in an inventory: RFC 3339 / ISO 8601 text (and
 * zoneless local times in the import's time zone) to Unix seconds, for
 * import's fields and for the CLI's --now (tsl_parse_time).
 *
 * Used by: import_sections.c (import_get_time), the CLI and reports
 * (tsl_parse_time, tsl_parse_time_in).  Needs: import.h, tz.h.
 */
#include "conflicts.h"
#include "import.h"
#include "progress.h"
#include "store.h"
#include "suggest.h"
#include "tz.h"

#include <jansson.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- time ---- */

static int64_t days_from_civil(int64_t y, int m, int d)
{
    /* Howard Hinnant's algorithm: exact for the proleptic Gregorian calendar
     * and independent of the process time zone (unlike mktime). */
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char **p, int n, int *out)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static bool parse_time(const char *text, bool local_ok, const tsl_tz *tz, int64_t *out);

bool tsl_parse_time(const char *text, int64_t *out)
{
    return parse_time(text, false, NULL, out);
}

bool tsl_parse_time_in(const char *text, const tsl_tz *tz, int64_t *out)
{
    return parse_time(text, true, tz, out);
}

static bool parse_time(const char *text, bool local_ok, const tsl_tz *tz, int64_t *out)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *p = text;
    int y, mo, d, h, mi, s = 0, oh = 0, om = 0, sign = 0;
    bool leap, local = false;

    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
        return false;
    if (*p == ':') {
        p++;
        if (!digits(&p, 2, &s))
            return false;
        if (*p == '.' || *p == ',') {
            p++;
            if (*p < '0' || *p > '9')
                return false;
            while (*p >= '0' && *p <= '9')
                p++;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!digits(&p, 2, &oh))
            return false;
        if (*p == ':')
            p++;
        if (!digits(&p, 2, &om) || oh > 23 || om > 59)
            return false;
    } else if (local_ok) {
        /* No zone: the import's zone (never the zone the engine runs in). */
        local = true;
    } else {
        return false;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60)
        return false;
    leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
        return false;
    *out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s -
           sign * (oh * 3600 + om * 60);
    if (local)
        *out = tsl_tz_to_utc(tz, *out);
    return true;
}

/* Unix seconds (a non-negative integer) or an ISO-8601 UTC string. */
int import_get_time(import_ctx *c, const json_t *rec, const char *field, bool required,
                    bool nullable, int64_t *out)
{
    const json_t *v = json_object_get(rec, field);
    const char *must = "Unix seconds or a time like \"2026-11-25T09:58:00Z\" or "
                       "\"2026-11-25 09:58:00\"";

    if (!v) {
        if (required)
            return tsl_seterr(TSL_EINVALID, "%s: missing required field \"%s\"", c->rec,
                              field);
        return FIELD_ABSENT;
    }
    if (json_is_null(v) && nullable)
        return FIELD_NULL;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (int64_t)json_integer_value(v);
        return FIELD_SET;
    }
    if (json_is_string(v) && tsl_parse_time_in(json_string_value(v), c->tz, out) && *out >= 0)
        return FIELD_SET;
    return import_bad_field(c, field, must, v);
}

