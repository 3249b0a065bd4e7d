/*
 * embed.c - the smallest embedder of libtsl: what a program that links the
 * installed library does, through tsl.h alone.
 *
 *   cc embed.c $(pkg-config --cflags --libs tsl) -o embed && ./embed DIR
 *
 * Creates a store in DIR (an existing directory), imports a two-site
 * inventory, decides the list of a London client and checks it exactly:
 * the London server with the most free capacity first, then the other.
 * Prints the list; exits 0 when it is what the default logic gives, 1 when
 * not, 2 on an engine error (with its message).
 *
 * Used by: .ci/package (against the installed package) and the ctest
 * embed_shared (against the libtsl.so of the build).  Needs: tsl.h only.
 */
#include <tsl.h>

#include <stdio.h>
#include <string.h>

static const char inventory[] =
    "{\"sites\": ["
    "  {\"name\": \"London\", \"subnets\": [\"10.10.0.0/16\"], \"country\": \"GB\"},"
    "  {\"name\": \"Madrid\", \"subnets\": [\"10.20.0.0/16\"], \"country\": \"ES\"}],"
    " \"task_servers\": ["
    "  {\"name\": \"ts-lon-01\", \"ip\": \"10.10.0.5\", \"sites\": [\"London\"],"
    "   \"registered\": true, \"service\": \"running\", \"capacity\": 100, \"connections\": 90,"
    "   \"last_heartbeat\": \"2026-11-25T09:59:00Z\"},"
    "  {\"name\": \"ts-lon-02\", \"ip\": \"10.10.0.6\", \"sites\": [\"London\"],"
    "   \"registered\": true, \"service\": \"running\", \"capacity\": 100, \"connections\": 10,"
    "   \"last_heartbeat\": \"2026-11-25T09:59:00Z\"},"
    "  {\"name\": \"ts-mad-01\", \"ip\": \"10.20.0.5\", \"sites\": [\"Madrid\"],"
    "   \"registered\": true, \"service\": \"running\", \"capacity\": 100, \"connections\": 0,"
    "   \"last_heartbeat\": \"2026-11-25T09:59:00Z\"}],"
    " \"clients\": []}";

static int fail(const char *what, int rc)
{
    fprintf(stderr, "embed: %s: %s (%s)\n", what, tsl_error_last(), tsl_error_name(rc));
    return 2;
}

int main(int argc, char **argv)
{
    char path[4096];
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_plan *plan = NULL;
    tsl_worker *w = NULL;
    tsl_result *res = NULL;
    tsl_request req = {0};
    int rc, status = 2;

    if (argc != 2) {
        fprintf(stderr, "usage: embed DIR\n");
        return 2;
    }
    snprintf(path, sizeof path, "%s/embed.db", argv[1]);
    remove(path);
    if ((rc = tsl_store_open(&st, path, 0)) < 0) {
        status = fail("open", rc);
        goto done;
    }
    if ((rc = tsl_store_import_json(st, inventory, strlen(inventory), "embed.c")) < 0) {
        status = fail("import", rc);
        goto done;
    }
    if ((rc = tsl_snapshot_load(&snap, st, NULL)) < 0 || (rc = tsl_plan_new(&plan, snap, NULL)) < 0 ||
        (rc = tsl_worker_new(&w)) < 0 || (rc = tsl_result_new(&res)) < 0) {
        status = fail("set up", rc);
        goto done;
    }
    req.ips[0] = "10.10.3.17";
    req.nips = 1;
    req.now = 1795600800; /* 2026-11-25T10:00:00Z: the heartbeats are fresh */
    if ((rc = tsl_decide(res, w, plan, &req, NULL)) < 0) {
        status = fail("decide", rc);
        goto done;
    }
    printf("site %s\n", tsl_result_site(res) ? tsl_result_site(res) : "(none)");
    for (size_t i = 0; i < tsl_result_count(res); i++)
        printf("%zu %s\n", i + 1, tsl_result_entry(res, i)->name);
    status = tsl_result_count(res) == 2 && tsl_result_site(res) &&
                     strcmp(tsl_result_site(res), "London") == 0 &&
                     strcmp(tsl_result_entry(res, 0)->name, "ts-lon-02") == 0 &&
                     strcmp(tsl_result_entry(res, 1)->name, "ts-lon-01") == 0
                 ? 0
                 : 1;
    if (status)
        fprintf(stderr, "embed: not the list the default logic gives (ts-lon-02, ts-lon-01)\n");
done:
    tsl_result_free(res);
    tsl_worker_free(w);
    tsl_plan_free(plan);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    remove(path);
    return status;
}
