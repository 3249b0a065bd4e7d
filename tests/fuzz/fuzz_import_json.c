/*
 * fuzz_import_json.c - inventory JSON import (tsl_store_import_json_opt)
 * into one SQLite store, emptied after every document.
 *
 * Any byte string must import or be refused with a message, never crash;
 * the store must hold nothing of a refused document; and whatever an
 * import accepts must load back into a snapshot (what the broker does
 * next) and list its subnet conflicts.  An input whose first byte is odd is
 * imported with --ignore-unknown and --timezone Europe/London.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "tsl.h"

static tsl_store *store;

static long long count_rows(void)
{
    sqlite3_stmt *q = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(tsl_store_db(store),
                           "SELECT (SELECT count(*) FROM sites) + (SELECT count(*) FROM"
                           " task_servers) + (SELECT count(*) FROM clients) + (SELECT count(*)"
                           " FROM site_subnets) + (SELECT count(*) FROM connection_errors)",
                           -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

static void open_store(void)
{
    char path[] = "/tmp/fuzz_import_json-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        abort();
    close(fd);
    unlink(path);
    if (tsl_store_open(&store, path, 0) < 0) {
        fprintf(stderr, "fuzz_import_json: %s\n", tsl_error_last());
        abort();
    }
    /* the store is scratch: unlink it now, SQLite keeps it open */
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {size > 0 && (data[0] & 1), NULL, &notes};

    if (!store)
        open_store();
    if (opt.ignore_unknown)
        opt.timezone = "Europe/London";
    if (tsl_store_import_json_opt(store, (const char *)data, size, "fuzz.json", &opt) == 0) {
        tsl_snapshot *snap = NULL;
        tsl_buf out = TSL_BUF_INIT;
        size_t n;
        /* accepted: it must load and be listed */
        if (tsl_snapshot_load(&snap, store, NULL) < 0) {
            fprintf(stderr, "accepted but does not load: %s\n", tsl_error_last());
            abort();
        }
        if (tsl_subnet_conflicts(&out, &n, snap, TSL_FORMAT_JSON) < 0)
            abort();
        tsl_buf_free(&out);
        tsl_snapshot_free(snap);
        if (sqlite3_exec(tsl_store_db(store),
                         "DELETE FROM connection_errors; DELETE FROM clients;"
                         " DELETE FROM server_sites; DELETE FROM task_servers;"
                         " DELETE FROM site_subnets; DELETE FROM sites;",
                         NULL, NULL, NULL) != SQLITE_OK)
            abort();
    } else if (tsl_error_last()[0] == '\0' || count_rows() != 0) {
        abort(); /* refused without a message, or half-written */
    }
    tsl_buf_free(&notes);
    return 0;
}
