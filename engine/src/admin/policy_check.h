/*
 * policy_check.h - what the files of `tsl check` share: the findings being
 * written, one line each, and the every-client pass
 * (policy_check_strands.c).
 *
 * Used by: policy_check.c, policy_check_strands.c.  Needs: policy.h,
 * decide.h.
 */
#ifndef TSL_POLICY_CHECK_H
#define TSL_POLICY_CHECK_H

#include "decide.h"
#include "policy.h"

typedef struct chk {
    tsl_buf *out;
    const char *name;
    int worst;
    int nerr, nwarn;
    int err;                /* first buffer failure */
} chk;

/* Appends one finding, "file:line: error|warning: text" (policy_check.c). */
TSL_INTERNAL void check_finding(chk *c, int level, int line, const char *fmt, ...) TSL_PRINTF(4, 5);

/* Decides every client under the plan and reports whom the policy strands,
 * per site and group (policy_check_strands.c). */
TSL_INTERNAL int policy_check_every_client(chk *c, const tsl_plan *plan, int64_t now);

#endif
