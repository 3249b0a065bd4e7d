/*
 * snapshot_load.c - reading the whole inventory out of the store into a
 * new immutable snapshot (tsl_snapshot_load).
 *
 * All reads happen inside one read transaction, so the snapshot is a
 * consistent picture even while an import writes (WAL).  The rows are fed
 * to the builder in snapshot.c in the order it needs: sites, subnets,
 * servers, clients, errors.  Servers and their manual site assignments are
 * read by two cursors ordered by server id and merged, to avoid a query
 * per server.
 *
 * Used by: the CLI, the broker (on start and SIGHUP), tests.
 * Needs: store.h, snapshot.h.
 */
#include "snapshot.h"
#include "store.h"

#include <stdlib.h>
#include <string.h>

static const char *col_text(sqlite3_stmt *stmt, int i)
{
    return (const char *)sqlite3_column_text(stmt, i);
}

/* Steps a load statement: 1 a row, 0 done, negative an error. */
static int step(tsl_store *st, sqlite3_stmt *stmt, const char *what)
{
    int rc = sqlite3_step(stmt);

    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return tsl_store_err(st, what);
}

static int load_sites(tsl_snapshot *snap, tsl_store *st)
{
    sqlite3_stmt *sites = NULL, *subnets = NULL;
    int err;

    if (!(sites = tsl_store_stmt(st, TSL_STMT_LOAD_SITES)) ||
        !(subnets = tsl_store_stmt(st, TSL_STMT_LOAD_SUBNETS))) {
        err = TSL_ESTORE;
        goto done;
    }
    while ((err = step(st, sites, "reading sites")) == 1) {
        double lat = sqlite3_column_double(sites, 2), lon = sqlite3_column_double(sites, 3);
        bool has_lat = sqlite3_column_type(sites, 2) != SQLITE_NULL;
        bool has_lon = sqlite3_column_type(sites, 3) != SQLITE_NULL;

        if ((err = snap_add_site(snap, col_text(sites, 0), col_text(sites, 1),
                                 has_lat ? &lat : NULL, has_lon ? &lon : NULL)) < 0)
            goto done;
    }
    if (err < 0)
        goto done;
    while ((err = step(st, subnets, "reading subnets")) == 1)
        if ((err = snap_add_subnet(snap, col_text(subnets, 0), col_text(subnets, 1))) < 0)
            goto done;

done:
    if (sites)
        sqlite3_reset(sites);
    if (subnets)
        sqlite3_reset(subnets);
    return err;
}

/* The manual sites of one server, in order, into a reusable array of names.
 * The names point into the statement's row, so they are copied. */
typedef struct name_list {
    char **names;
    size_t n, cap;
} name_list;

static void names_clear(name_list *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->names[i]);
    l->n = 0;
}

static int names_push(name_list *l, const char *name)
{
    char *copy;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **nn = realloc(l->names, cap * sizeof *nn);
        if (!nn)
            return tsl_oom();
        l->names = nn;
        l->cap = cap;
    }
    if (!(copy = strdup(name ? name : "")))
        return tsl_oom();
    l->names[l->n++] = copy;
    return 0;
}

static int load_servers(tsl_snapshot *snap, tsl_store *st)
{
    sqlite3_stmt *srv = NULL, *ss = NULL;
    name_list sites = {NULL, 0, 0};
    int err = 0, rc, ss_rc;

    if (!(srv = tsl_store_stmt(st, TSL_STMT_LOAD_SERVERS)) ||
        !(ss = tsl_store_stmt(st, TSL_STMT_LOAD_SERVER_SITES))) {
        err = TSL_ESTORE;
        goto done;
    }
    if ((ss_rc = step(st, ss, "reading server sites")) < 0) {
        err = ss_rc;
        goto done;
    }
    while ((rc = step(st, srv, "reading task servers")) == 1) {
        int64_t id = sqlite3_column_int64(srv, 0);
        const char *service = col_text(srv, 5);

        names_clear(&sites);
        /* Both cursors are ordered by server id; rows of a server id that
         * no longer exists cannot occur (foreign key), but are skipped. */
        while (ss_rc == 1 && sqlite3_column_int64(ss, 0) <= id) {
            if (sqlite3_column_int64(ss, 0) == id &&
                (err = names_push(&sites, col_text(ss, 1))) < 0)
                goto done;
            if ((ss_rc = step(st, ss, "reading server sites")) < 0) {
                err = ss_rc;
                goto done;
            }
        }
        if ((err = snap_add_server(snap, col_text(srv, 1), col_text(srv, 2), col_text(srv, 3),
                                   (const char *const *)sites.names, sites.n,
                                   sqlite3_column_int(srv, 4) != 0,
                                   service && strcmp(service, "running") == 0,
                                   sqlite3_column_int64(srv, 6), sqlite3_column_int64(srv, 7),
                                   sqlite3_column_int64(srv, 8),
                                   sqlite3_column_int64(srv, 9))) < 0)
            goto done;
    }
    err = rc;

done:
    names_clear(&sites);
    free(sites.names);
    if (srv)
        sqlite3_reset(srv);
    if (ss)
        sqlite3_reset(ss);
    return err;
}

static int load_clients(tsl_snapshot *snap, tsl_store *st)
{
    sqlite3_stmt *clients = NULL, *errors = NULL;
    int err;

    if (!(clients = tsl_store_stmt(st, TSL_STMT_LOAD_CLIENTS)) ||
        !(errors = tsl_store_stmt(st, TSL_STMT_LOAD_ERRORS))) {
        err = TSL_ESTORE;
        goto done;
    }
    while ((err = step(st, clients, "reading clients")) == 1)
        if ((err = snap_add_client(snap, col_text(clients, 0), col_text(clients, 1),
                                   col_text(clients, 2), col_text(clients, 3),
                                   col_text(clients, 4), col_text(clients, 5))) < 0)
            goto done;
    if (err < 0)
        goto done;
    /* Errors after clients: the builder resolves them by GUID and name. */
    while ((err = step(st, errors, "reading connection errors")) == 1)
        if ((err = snap_add_error(snap, col_text(errors, 0), col_text(errors, 1),
                                  sqlite3_column_int64(errors, 2))) < 0)
            goto done;

done:
    if (clients)
        sqlite3_reset(clients);
    if (errors)
        sqlite3_reset(errors);
    return err;
}

int tsl_snapshot_load(tsl_snapshot **out, tsl_store *st, const tsl_settings *settings)
{
    tsl_snapshot *snap = NULL;
    bool in_txn = false;
    int err;

    TSL_ARG(out);
    *out = NULL;
    TSL_ARG(st);
    if ((err = tsl_snapshot_begin(&snap, settings)) < 0)
        goto done;
    if ((err = tsl_store_begin_read(st)) < 0)
        goto done;
    in_txn = true;
    if ((err = load_sites(snap, st)) < 0 || (err = load_servers(snap, st)) < 0 ||
        (err = load_clients(snap, st)) < 0)
        goto done;
    /* End the read transaction before the (CPU-only) seal, so a writer's
     * checkpoint is not held back by it. */
    in_txn = false;
    if ((err = tsl_store_commit(st)) < 0)
        goto done;
    if ((err = tsl_snapshot_seal(snap)) < 0)
        goto done;
    *out = snap;
    snap = NULL;

done:
    if (in_txn)
        tsl_store_rollback(st);
    tsl_snapshot_free(snap);
    return err;
}
