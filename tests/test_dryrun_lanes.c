/*
 * test_dryrun_lanes.c - the dry-run over the inventory on several threads
 * finds exactly what one pass finds: every count, the per-site and
 * per-server tables, the kept top changes and the policy errors, compared
 * through the whole text report and the summary, on a generated estate
 * with two policies (a Lua rule on every request of the "after" side) and
 * with the default logic under two rankings.
 */
#include "harness.h"

#include "dryrun.h"
#include "store.h"
#include "tsl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tsl_store *estate(void)
{
    static tsl_store *st;
    if (!st) {
        if (tsl_store_open(&st, tsl_test_path("lanes.db"), 0) < 0 ||
            tsl_estate_generate(st, 40, 160, 30000, 7) < 0) {
            fprintf(stderr, "estate: %s\n", tsl_error_last());
            return NULL;
        }
    }
    return st;
}

static char *read_policy(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/bench/%s", TSL_SOURCE_DIR, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    if (buf)
        buf[*len] = '\0';
    fclose(f);
    return buf;
}

static int plan_for(tsl_plan **out, tsl_snapshot *snap, const char *policy)
{
    tsl_policy *pol = NULL;
    int rc = 0;
    if (policy) {
        size_t len;
        char *src = read_policy(policy, &len);
        if (!src)
            return TSL_ERROR;
        rc = tsl_policy_compile(&pol, src, len, policy);
        free(src);
    }
    if (rc == 0)
        rc = tsl_plan_new(out, snap, pol);
    tsl_policy_free(pol);
    return rc;
}

/* Runs the dry-run over the inventory on `lanes` threads; the text report
 * and the summary out. */
static int run(int lanes, const char *before, const char *after, tsl_buf *text,
               tsl_dryrun_summary *sum)
{
    tsl_snapshot *sa = NULL, *sb = NULL;
    tsl_plan *pa = NULL, *pb = NULL;
    tsl_dryrun *dr = NULL;
    tsl_settings alt;
    tsl_settings_init(&alt);
    alt.selection = TSL_SELECT_RESPONSIVENESS;
    alt.max = 5;
    tsl_dryrun_options opt;
    tsl_dryrun_options_init(&opt);
    opt.now = TSL_ESTATE_EPOCH;
    opt.top = 20;
    int rc;
    if ((rc = tsl_snapshot_load(&sa, estate(), NULL)) < 0 ||
        (rc = tsl_snapshot_load(&sb, estate(), after ? NULL : &alt)) < 0 ||
        (rc = plan_for(&pa, sa, before)) < 0 || (rc = plan_for(&pb, sb, after)) < 0 ||
        (rc = tsl_dryrun_new(&dr, pa, pb, &opt)) < 0)
        goto done;
    dr->lanes = lanes;
    if ((rc = tsl_dryrun_add_inventory(dr)) < 0 || (rc = tsl_dryrun_finish(dr)) < 0 ||
        (rc = tsl_dryrun_text(text, dr)) < 0)
        goto done;
    tsl_dryrun_summary_get(dr, sum);
done:
    if (rc < 0)
        fprintf(stderr, "dry-run: %s\n", tsl_error_last());
    tsl_dryrun_free(dr);
    tsl_plan_free(pa);
    tsl_plan_free(pb);
    tsl_snapshot_free(sa);
    tsl_snapshot_free(sb);
    return rc;
}

static void same_on_lanes(const char *before, const char *after)
{
    tsl_buf one = TSL_BUF_INIT;
    tsl_dryrun_summary s1;
    CHECK_OK(run(1, before, after, &one, &s1));
    CHECK(s1.requests == 30000);
    CHECK(s1.list_changed > 1000); /* the comparison finds plenty to keep */
    for (int lanes = 2; lanes <= 5; lanes += 3) {
        tsl_buf many = TSL_BUF_INIT;
        tsl_dryrun_summary sn;
        CHECK_OK(run(lanes, before, after, &many, &sn));
        CHECK(memcmp(&s1, &sn, sizeof s1) == 0);
        CHECK_STR(many.ptr, one.ptr);
        tsl_buf_free(&many);
    }
    tsl_buf_free(&one);
}

TEST(dryrun__two_policies_on_several_threads_find_what_one_pass_finds)
{
    same_on_lanes("dryrun_before.lua", "dryrun_after.lua");
}

TEST(dryrun__default_logic_on_several_threads_finds_what_one_pass_finds)
{
    same_on_lanes(NULL, NULL);
}

int main(void)
{
    RUN(dryrun__two_policies_on_several_threads_find_what_one_pass_finds);
    RUN(dryrun__default_logic_on_several_threads_finds_what_one_pass_finds);
    return tsl_test_main();
}
