/*
 * bench_snapmem.c - what a snapshot costs in memory per client: the
 * resident set before and after loading one snapshot of a generated
 * estate (freed heap returned to the system first, so the difference is
 * what the snapshot keeps), and where those bytes are: the client array,
 * the strings and records in the arena, the GUID and name indexes.
 *
 *   bench_snapmem [--db FILE] [--clients N]   (N 1,000,000; FILE is
 *                 generated with 500 sites and 2,000 servers if absent)
 *
 * Used by: docs/performance.md ("Memory: bytes per client").
 */
#include "snapshot.h"
#include "store.h"
#include "tsl.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static long rss_kb(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    const char *db = "/tmp/tsl-bench-snapmem.db";
    unsigned clients = 1000000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--db"))
            db = argv[i + 1];
        else if (!strcmp(argv[i], "--clients"))
            clients = (unsigned)strtoul(argv[i + 1], NULL, 10);
    }
    struct stat sb;
    bool fresh = stat(db, &sb) != 0;
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    int rc;
    if ((rc = tsl_store_open(&st, db, 0)) < 0 ||
        (fresh && (rc = tsl_estate_generate(st, 500, 2000, clients, 1)) < 0)) {
        fprintf(stderr, "bench_snapmem: %s\n", tsl_error_last());
        return 1;
    }
    long before = rss_kb();
    if ((rc = tsl_snapshot_load(&snap, st, NULL)) < 0) {
        fprintf(stderr, "bench_snapmem: %s\n", tsl_error_last());
        return 1;
    }
    tsl_store_free(st); /* its page cache is not the snapshot's */
    long after = rss_kb();
    size_t n = snap->nclients, arena = 0;
    for (struct snap_arena *a = snap->arena; a; a = *(struct snap_arena **)a)
        arena++;
    double per = (double)(after - before) * 1024.0 / (double)n;
    printf("clients        %zu (of %zu sites, %zu servers)\n", n, (size_t)snap->nsites,
           (size_t)snap->nservers);
    printf("rss            %ld MiB before the load, %ld MiB after\n", before / 1024, after / 1024);
    printf("bytes/client   %.0f (resident set growth / clients)\n", per);
    printf("  client array %.0f (%zu bytes a record, %u slots)\n",
           (double)snap->cap_clients * sizeof(snap_client) / (double)n, sizeof(snap_client),
           snap->cap_clients);
    printf("  indexes      %.0f (GUID and name, %u + %u slots of 4 bytes)\n",
           (double)(snap->client_idx.mask + 1 + snap->name_idx.mask + 1) * 4 / (double)n,
           snap->client_idx.mask + 1, snap->name_idx.mask + 1);
    printf("  arena        %zu blocks of 64 KiB: %.0f a client with sites and servers\n", arena,
           (double)arena * 65536 / (double)n);
    tsl_snapshot_free(snap);
    return 0;
}
