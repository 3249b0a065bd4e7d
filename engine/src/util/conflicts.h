/*
 * conflicts.h - subnets claimed by more than one site, the overlaps ITMS
 * allows: the same subnet in several sites, and a subnet inside another
 * site's wider one (such as the /8 to /16 supernets ITMS creates by
 * itself).  The import warns about them, the snapshot decides them the
 * documented way (the longest prefix wins; among sites holding the same
 * subnet, the first by name, ignoring case), and `tsl report
 * subnet-conflicts`, `check` and `doctor` list them.
 *
 * Used by: import_json.c (warnings from the store), subnet_conflicts.c
 * (the report over a snapshot), snapshot.c (the tie-break).
 * Needs: common.h.
 */
#ifndef TSL_CONFLICTS_H
#define TSL_CONFLICTS_H

#include "common.h"

/* One site's claim on a subnet (strings borrowed from the caller). */
typedef struct conflict_claim {
    const char *site, *cidr;
} conflict_claim;

typedef struct subnet_conflict {
    const char *cidr;        /* the subnet its clients are matched by */
    tsl_ip prefix;
    int bits;                /* in the 128-bit space */
    const char *site;        /* the site its clients get */
    bool duplicate;          /* some other site holds exactly this subnet */
    const conflict_claim *others; /* the other claims: the same subnet, then wider ones */
    size_t nothers;
} subnet_conflict;

typedef struct subnet_conflicts {
    subnet_conflict *v;
    size_t n;
    conflict_claim *pool;    /* storage of every conflict's `others` */
} subnet_conflicts;

/* Finds every conflict among `n` claims (unparseable CIDRs are skipped),
 * ordered by address, then prefix length.  Free with conflicts_free. */
TSL_INTERNAL int conflicts_find(subnet_conflicts *out, const conflict_claim *claims, size_t n);
TSL_INTERNAL void conflicts_free(subnet_conflicts *c);
/* The deterministic tie-break among sites holding the same subnet: true
 * when site `a` takes the subnet from site `b`. */
TSL_INTERNAL bool conflicts_site_wins(const char *a, const char *b);

/* When the site of client `ci` (by index) is decided by a conflicting
 * subnet: true, and a one-line description ("10.10.0.0/16 is also claimed
 * by Paris (10.10.0.0/16); the client gets London: ...") into `line`. */
TSL_INTERNAL int snap_client_conflict(bool *out, tsl_buf *line, const tsl_snapshot *snap,
                                      uint32_t ci);

#endif
