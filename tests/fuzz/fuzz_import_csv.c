/*
 * fuzz_import_csv.c - CSV import (tsl_store_import_csv_opt): the input is
 * one or more CSV files separated by a line "--8<--"; the first byte of each
 * picks its kind (sites, task_servers, clients, connection_errors), the
 * rest is the file.  All files go in as one import, into one SQLite store
 * emptied after every input.
 *
 * Any input must import or be refused with a message, never crash; a
 * refused set writes nothing; an accepted one loads into a snapshot.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"
#include "tsl.h"

#define MAX_FILES 4

static tsl_store *store;
static char dir[64];

static void setup(void)
{
    char path[128];
    strcpy(dir, "/tmp/fuzz_import_csv-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof path, "%s/store.db", dir);
    if (tsl_store_open(&store, path, 0) < 0) {
        fprintf(stderr, "fuzz_import_csv: %s\n", tsl_error_last());
        abort();
    }
}

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const kinds[] = {"sites", "task_servers", "clients",
                                        "connection_errors"};
    static const char sep[] = "\n--8<--\n";
    char paths[MAX_FILES][160];
    const char *pp[MAX_FILES];
    size_t n = 0, pos = 0;
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {false, "+01:00", &notes};

    if (!store)
        setup();
    while (pos < size && n < MAX_FILES) {
        const uint8_t *end = NULL;
        size_t len;
        FILE *f;
        for (size_t i = pos; i + sizeof sep - 1 <= size; i++)
            if (!memcmp(data + i, sep, sizeof sep - 1)) {
                end = data + i;
                break;
            }
        len = (end ? (size_t)(end - data) : size) - pos;
        if (!len)
            break;
        /* distinct names: two files of one kind are allowed */
        snprintf(paths[n], sizeof paths[n], "%s/%zu/%s.csv", dir, n, kinds[data[pos] % 4]);
        {
            char sub[100];
            snprintf(sub, sizeof sub, "%s/%zu", dir, n);
            mkdir(sub, 0700);
        }
        if (!(f = fopen(paths[n], "wb")))
            abort();
        if (len > 1 && fwrite(data + pos + 1, 1, len - 1, f) != len - 1)
            abort();
        fclose(f);
        pp[n] = paths[n];
        n++;
        pos += len + (end ? sizeof sep - 1 : 0);
    }
    if (!n)
        return 0;
    if (tsl_store_import_csv_opt(store, pp, NULL, n, &opt) == 0) {
        tsl_snapshot *snap = NULL;
        if (tsl_snapshot_load(&snap, store, NULL) < 0) {
            fprintf(stderr, "accepted but does not load: %s\n", tsl_error_last());
            abort();
        }
        tsl_snapshot_free(snap);
        if (sqlite3_exec(tsl_store_db(store),
                         "DELETE FROM connection_errors; DELETE FROM clients;"
                         " DELETE FROM server_sites; DELETE FROM task_servers;"
                         " DELETE FROM site_subnets; DELETE FROM sites;",
                         NULL, NULL, NULL) != SQLITE_OK)
            abort();
    } else if (tsl_error_last()[0] == '\0' || count_rows() != 0) {
        abort();
    }
    for (size_t i = 0; i < n; i++)
        unlink(paths[i]);
    tsl_buf_free(&notes);
    return 0;
}
