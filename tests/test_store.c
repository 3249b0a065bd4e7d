/*
 * test_store.c - opening stores: schema creation, migrations, the version
 * checks, read-only mode and the statement cache, on real SQLite files.
 */
#include "harness.h"
#include "store.h"
#include "tsl.h"

#include <sqlite3.h>

static const char *small_doc =
    "{\"sites\":[{\"name\":\"London\",\"subnets\":[\"10.10.0.0/16\"]}],"
    " \"task_servers\":[{\"name\":\"ts-lon-01\",\"ip\":\"10.10.0.5\",\"sites\":[\"London\"]}]}";

/* One integer from a query on a raw connection (a second, independent
 * handle: what another process would see). */
static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *stmt = NULL;
    long long v = -1;

    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return v;
}

static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);

    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

static long long store_int(tsl_store *st, const char *sql)
{
    sqlite3_stmt *stmt = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(tsl_store_db(st), sql, -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

TEST(store__open_creates_file_with_every_table_at_latest_version)
{
    const char *path = tsl_test_path("new.db");
    tsl_store *st = NULL;

    CHECK_OK(tsl_store_open(&st, path, 0));
    CHECK(tsl_store_schema_latest() >= 1);
    CHECK_INT(tsl_store_schema_version(st), tsl_store_schema_latest());
    CHECK_INT(store_int(st, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                            " ('sites','site_subnets','task_servers','server_sites','clients',"
                            "'connection_errors')"),
              6);
    CHECK_INT(store_int(st, "PRAGMA foreign_keys"), 1);
    CHECK_INT(store_int(st, "PRAGMA busy_timeout"), 5000);
    tsl_store_free(st);
    /* Seen from outside: the version is on disk and the journal is WAL. */
    CHECK_INT(raw_int(path, "PRAGMA user_version"), tsl_store_schema_latest());
    CHECK_INT(raw_int(path, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"),
              1);
}

TEST(store__reopen_keeps_data_and_does_not_migrate_again)
{
    const char *path = tsl_test_path("reopen.db");
    tsl_store *st = NULL;

    CHECK_OK(tsl_store_open(&st, path, 0));
    CHECK_OK(tsl_store_import_json(st, small_doc, strlen(small_doc), "small.json"));
    tsl_store_free(st);
    st = NULL;

    CHECK_OK(tsl_store_open(&st, path, 0));
    CHECK_INT(tsl_store_schema_version(st), tsl_store_schema_latest());
    CHECK_INT(store_int(st, "SELECT count(*) FROM sites"), 1);
    CHECK_INT(store_int(st, "SELECT count(*) FROM task_servers"), 1);
    CHECK_INT(store_int(st, "SELECT count(*) FROM server_sites"), 1);
    tsl_store_free(st);
}

TEST(store__newer_schema_is_refused_with_message)
{
    const char *path = tsl_test_path("newer.db");
    tsl_store *st = (tsl_store *)&st;   /* must be set to NULL on failure */
    int rc;

    CHECK_INT(raw_exec(path, "CREATE TABLE x(y); PRAGMA user_version = 999"), SQLITE_OK);
    rc = tsl_store_open(&st, path, 0);
    CHECK_INT(rc, TSL_ESTORE);
    CHECK_NULL(st);
    CHECK_CONTAINS(tsl_error_last(), "schema version 999");
    CHECK_CONTAINS(tsl_error_last(), "newer than this tsl knows");
    /* Refused in read-only mode too, and the file is left untouched. */
    CHECK_INT(tsl_store_open(&st, path, TSL_STORE_READONLY), TSL_ESTORE);
    CHECK_CONTAINS(tsl_error_last(), "newer");
    CHECK_INT(raw_int(path, "PRAGMA user_version"), 999);
    CHECK_INT(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'sites'"), 0);
}

TEST(store__failed_migration_leaves_nothing_behind)
{
    const char *path = tsl_test_path("clash.db");
    tsl_store *st = NULL;

    /* A table the first migration also creates, but not the first one it
     * creates: the migration fails half way and must roll back whole. */
    CHECK_INT(raw_exec(path, "CREATE TABLE connection_errors(x)"), SQLITE_OK);
    CHECK_INT(tsl_store_open(&st, path, 0), TSL_ESTORE);
    CHECK_NULL(st);
    CHECK_CONTAINS(tsl_error_last(), "applying migration 001_inventory.sql");
    CHECK_INT(raw_int(path, "PRAGMA user_version"), 0);
    CHECK_INT(raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'sites'"), 0);
}

TEST(store__readonly_reads_and_refuses_writes)
{
    const char *path = tsl_test_path("ro.db");
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;

    CHECK_OK(tsl_store_open(&st, path, 0));
    CHECK_OK(tsl_store_import_json(st, small_doc, strlen(small_doc), "small.json"));
    tsl_store_free(st);
    st = NULL;

    CHECK_OK(tsl_store_open(&st, path, TSL_STORE_READONLY));
    CHECK(tsl_store_readonly(st));
    CHECK_INT(tsl_store_schema_version(st), tsl_store_schema_latest());
    CHECK_OK(tsl_snapshot_load(&snap, st, NULL));
    CHECK_INT(tsl_snapshot_site_count(snap), 1);
    tsl_snapshot_free(snap);
    CHECK_INT(tsl_store_import_json(st, small_doc, strlen(small_doc), "small.json"), TSL_ESTORE);
    CHECK_CONTAINS(tsl_error_last(), "read-only");
    CHECK_INT(tsl_estate_generate(st, 1, 1, 1, 1), TSL_ESTORE);
    tsl_store_free(st);
}

TEST(store__readonly_does_not_create_or_migrate)
{
    const char *missing = tsl_test_path("missing.db");
    const char *old = tsl_test_path("old.db");
    tsl_store *st = NULL;

    CHECK_INT(tsl_store_open(&st, missing, TSL_STORE_READONLY), TSL_ESTORE);
    CHECK_CONTAINS(tsl_error_last(), "cannot open store");
    CHECK_NULL(st);
    CHECK(tsl_test_sh(NULL, false, "test -e '%s'", missing) != 0);

    CHECK_INT(raw_exec(old, "CREATE TABLE unrelated(x)"), SQLITE_OK);
    CHECK_INT(tsl_store_open(&st, old, TSL_STORE_READONLY), TSL_ESTORE);
    CHECK_CONTAINS(tsl_error_last(), "open it read-write once to migrate");
    CHECK_INT(raw_int(old, "PRAGMA user_version"), 0);
}

TEST(store__memory_store_migrates_without_wal)
{
    tsl_store *st = NULL;

    CHECK_OK(tsl_store_open(&st, ":memory:", 0));
    CHECK_INT(tsl_store_schema_version(st), tsl_store_schema_latest());
    CHECK_INT(store_int(st, "SELECT count(*) FROM pragma_journal_mode WHERE journal_mode = 'wal'"),
              0);
    CHECK_OK(tsl_store_import_json(st, small_doc, strlen(small_doc), "small.json"));
    CHECK_INT(store_int(st, "SELECT count(*) FROM sites"), 1);
    tsl_store_free(st);
}

TEST(store__unknown_flags_are_rejected)
{
    tsl_store *st = NULL;

    CHECK_INT(tsl_store_open(&st, ":memory:", 0x80), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "unknown store flags");
    CHECK_NULL(st);
}

TEST(store__cached_statement_comes_back_reset_and_unbound)
{
    tsl_store *st = NULL;
    sqlite3_stmt *a, *b;

    CHECK_OK(tsl_store_open(&st, ":memory:", 0));
    CHECK_OK(tsl_store_import_json(st, small_doc, strlen(small_doc), "small.json"));
    a = tsl_store_stmt(st, TSL_STMT_SITE_ID);
    CHECK(a != NULL);
    CHECK_INT(sqlite3_bind_text(a, 1, "London", -1, SQLITE_STATIC), SQLITE_OK);
    CHECK_INT(sqlite3_step(a), SQLITE_ROW);
    /* Left mid-statement on purpose: the next fetch must reset it. */
    b = tsl_store_stmt(st, TSL_STMT_SITE_ID);
    CHECK(a == b);
    CHECK(sqlite3_stmt_busy(b) == 0);
    CHECK_INT(sqlite3_step(b), SQLITE_DONE); /* the binding was cleared: name = NULL */
    sqlite3_reset(b);
    tsl_store_free(st);
}

TEST(store__every_statement_prepares)
{
    tsl_store *st = NULL;
    int i;

    CHECK_OK(tsl_store_open(&st, ":memory:", 0));
    for (i = 0; i < TSL_STMT__COUNT; i++)
        if (!tsl_store_stmt(st, (tsl_stmt_id)i))
            FAILF_("statement %d does not prepare: %s", i, tsl_error_last());
    tsl_store_free(st);
}

TEST(store__transaction_helpers_commit_and_roll_back)
{
    tsl_store *st = NULL;

    CHECK_OK(tsl_store_open(&st, ":memory:", 0));
    CHECK_OK(tsl_store_begin(st));
    CHECK_INT(sqlite3_exec(tsl_store_db(st), "INSERT INTO sites(name) VALUES ('A')", NULL, NULL,
                           NULL),
              SQLITE_OK);
    tsl_store_rollback(st);
    CHECK_INT(store_int(st, "SELECT count(*) FROM sites"), 0);
    CHECK_OK(tsl_store_begin(st));
    CHECK_INT(sqlite3_exec(tsl_store_db(st), "INSERT INTO sites(name) VALUES ('B')", NULL, NULL,
                           NULL),
              SQLITE_OK);
    CHECK_OK(tsl_store_commit(st));
    CHECK_INT(store_int(st, "SELECT count(*) FROM sites"), 1);
    /* Rolling back with nothing open is harmless and keeps the message. */
    tsl_seterr(TSL_EINVALID, "keep me");
    tsl_store_rollback(st);
    CHECK_CONTAINS(tsl_error_last(), "keep me");
    tsl_store_free(st);
}

TEST(store__nested_transaction_is_refused_and_the_outer_one_survives)
{
    tsl_store *st = NULL;

    CHECK_OK(tsl_store_open(&st, ":memory:", 0));
    CHECK_OK(tsl_store_begin(st));
    CHECK_INT(sqlite3_exec(tsl_store_db(st), "INSERT INTO sites(name) VALUES ('Outer')", NULL,
                           NULL, NULL),
              SQLITE_OK);
    CHECK_INT(tsl_store_import_json(st, small_doc, strlen(small_doc), "small.json"), TSL_ESTORE);
    CHECK_CONTAINS(tsl_error_last(), "already open");
    CHECK_INT(tsl_store_begin_read(st), TSL_ESTORE);
    /* The caller's transaction and its row are still there. */
    CHECK_OK(tsl_store_commit(st));
    CHECK_INT(store_int(st, "SELECT count(*) FROM sites WHERE name = 'Outer'"), 1);
    CHECK_INT(store_int(st, "SELECT count(*) FROM sites"), 1);
    tsl_store_free(st);
}

TEST(store__free_accepts_null)
{
    tsl_store_free(NULL);
}

int main(void)
{
    RUN(store__open_creates_file_with_every_table_at_latest_version);
    RUN(store__reopen_keeps_data_and_does_not_migrate_again);
    RUN(store__newer_schema_is_refused_with_message);
    RUN(store__failed_migration_leaves_nothing_behind);
    RUN(store__readonly_reads_and_refuses_writes);
    RUN(store__readonly_does_not_create_or_migrate);
    RUN(store__memory_store_migrates_without_wal);
    RUN(store__unknown_flags_are_rejected);
    RUN(store__cached_statement_comes_back_reset_and_unbound);
    RUN(store__every_statement_prepares);
    RUN(store__transaction_helpers_commit_and_roll_back);
    RUN(store__nested_transaction_is_refused_and_the_outer_one_survives);
    RUN(store__free_accepts_null);
    return tsl_test_main();
}
