/*
 * tz.h - the time zone an import reads times written without one in:
 * UTC, a fixed offset ("+01:00", "-0530", "UTC+2"), or a named zone of the
 * system's tz database ("Europe/London", read from /usr/share/zoneinfo).
 *
 * A zone is a small immutable object: converting a local time is a binary
 * search in memory, with no process-wide state (no TZ variable, no tzset),
 * so imports on several threads with different zones do not interfere.
 *
 * Used by: import_time.c (tsl_parse_time_in), import_csv.c.  Needs: file.c.
 */
#ifndef TSL_TZ_H
#define TSL_TZ_H

#include "common.h"

typedef struct tsl_tz tsl_tz;

/* NULL, "", "UTC", "Z": UTC.  TSL_EINVALID names an unknown zone. */
TSL_INTERNAL int tsl_tz_open(tsl_tz **out, const char *spec);
TSL_INTERNAL void tsl_tz_free(tsl_tz *tz);
/* The zone as given ("Europe/London", "UTC"); borrowed. */
TSL_INTERNAL const char *tsl_tz_name(const tsl_tz *tz);
/* Local wall-clock seconds (civil time counted as if it were UTC) to Unix
 * seconds.  A local time that occurs twice (clocks going back) is read as
 * the first occurrence; one that never occurs (clocks going forward) with
 * the offset in force before the change.  `tz` NULL is UTC. */
TSL_INTERNAL int64_t tsl_tz_to_utc(const tsl_tz *tz, int64_t local);

#endif
