/*
 * cmd_dryrun.c - `tsl dry-run`: what a policy change would do to every
 * client before it reaches one.  Thin glue over tsl_dryrun_* (dryrun.c):
 * build the two plans, feed the population, print the report, gate.
 *
 * Exit status is the gate a script or CI needs: 0 no --fail-on condition
 * occurred, 3 one did, 2 on any error (this command's own convention; the
 * CLI's CLI_FAIL is 3 elsewhere, so engine failures map to 2 here).
 *
 * Used by: main.c.  Needs: cli.h.
 */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: tsl --db FILE dry-run --policy NEW.lua [--against active|OLD.lua]\n"
    "              [--clients all|recorded] [--json | --html OUT.html]\n"
    "              [--fail-on blocked,cross-site,over-capacity]\n"
    "              [--expect blocked=3,moved<=10,...]\n"
    "\n"
    "Decides every client with the policy in force and with NEW.lua, compares, and\n"
    "prints what would change: first servers, whole lists, clients newly blocked\n"
    "(empty list) or unblocked, clients newly sent outside their site or country,\n"
    "per-site and per-server counts before and after, servers whose projected\n"
    "clients exceed their capacity; then the most serious changes with reasons.\n"
    "\n"
    "  --policy NEW        the candidate: a policy file, a stored version (3,\n"
    "                      v3, or a hash prefix); when it is a stored version (or a\n"
    "                      file with the same content) the result is recorded with\n"
    "                      it, which `tsl policy activate --require-dry-run` checks;\n"
    "                      or default: the default logic (what turning policies off does)\n"
    "  --against SIDE      active (default): the rollout in force, staged sites\n"
    "                      included, or the default logic when none is active;\n"
    "                      default: the default logic; a policy file; a version\n"
    "  --clients WHICH     all (default): every client of the inventory;\n"
    "                      recorded: the list requests in the broker's decision log\n"
    "  --limit N           with recorded: the newest N requests only\n"
    "  --json              the complete diff as one JSON document on stdout\n"
    "  --html OUT.html     also write a self-contained HTML report (no network)\n"
    "  --fail-on CONDS     exit 3 when one occurs: blocked, cross-site,\n"
    "                      over-capacity (comma-separated) or all\n"
    "  --expect LIST       what the run should find, when the policy blocks or moves\n"
    "                      clients on purpose: METRIC OP N (OP: = <= >= < >) or\n"
    "                      METRIC alone (that condition is accepted), comma-\n"
    "                      separated; metrics: blocked, newly-blocked, unblocked,\n"
    "                      moved, changed, cross-site, cross-country,\n"
    "                      over-capacity, errors, rule-errors.  Met when every item\n"
    "                      holds and every condition found is covered; recorded,\n"
    "                      and exit 3 when not met\n"
    "  --top N             changes shown with reasons (20)\n"
    "  --now TIME          decide as of this time: Unix seconds or ISO 8601\n"
    "  --author NAME       recorded with the dry-run (default: $USER)\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 no --fail-on condition occurred (and --expect met), 3 one did\n"
    "(or --expect was not met), 2 error.\n";

enum { DRY_OK = 0, DRY_ERROR = 2, DRY_CONDITION = 3 };

/* One side of the comparison, and how to describe and record it. */
struct side {
    tsl_policy *policy;
    tsl_plan *plan;
    char label[512];
    char key[512];       /* the "against" key recorded with the dry-run */
    int64_t version;     /* stored version id, 0 when none */
};

static int json_to_stdout(void *ud, const char *data, size_t len)
{
    (void)ud;
    return fwrite(data, 1, len, stdout) == len ? 0 : TSL_ERROR;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Compiles a policy from a file or a stored version into side->policy. */
static int load_policy(const struct cli_global *g, tsl_store *st, const char *ref,
                       struct side *s)
{
    char *src = NULL, *name = NULL;
    size_t len = 0;
    int rc;

    if (file_exists(ref)) {
        if (cli_read_file(g, ref, &src, &len) != CLI_OK)
            return DRY_ERROR;
        rc = tsl_policy_compile(&s->policy, src, len, ref);
        free(src);
        if (rc < 0) {
            cli_engine_error(g, rc, "policy %s does not compile", ref);
            return DRY_ERROR;
        }
        /* the same content stored as a version: record against it */
        char hash[64];
        if (tsl_rollout_resolve(&s->version, hash, sizeof hash, st,
                                tsl_policy_version(s->policy)) < 0)
            s->version = 0;
        tsl_error_clear();
        if (s->version)
            snprintf(s->label, sizeof s->label, "%s (%s, stored as version %lld)", ref,
                     tsl_policy_version(s->policy), (long long)s->version);
        else
            snprintf(s->label, sizeof s->label, "%s (%s)", ref, tsl_policy_version(s->policy));
        snprintf(s->key, sizeof s->key, "file:%s", tsl_policy_version(s->policy));
        return DRY_OK;
    }
    char hash[64];
    if ((rc = tsl_rollout_resolve(&s->version, hash, sizeof hash, st, ref)) < 0) {
        if (rc == TSL_ENOTFOUND || rc == TSL_EINVALID)
            cli_error(g, 0, "--policy %s: no such file, and %s", ref, tsl_error_last());
        else
            cli_engine_error(g, rc, "--policy %s", ref);
        return DRY_ERROR;
    }
    if ((rc = tsl_rollout_source(&src, &len, &name, st, s->version)) < 0) {
        cli_engine_error(g, rc, "reading policy version %s", ref);
        return DRY_ERROR;
    }
    rc = tsl_policy_compile(&s->policy, src, len, name);
    free(src);
    if (rc < 0) {
        cli_engine_error(g, rc, "stored policy version %s does not compile", ref);
        free(name);
        return DRY_ERROR;
    }
    snprintf(s->label, sizeof s->label, "version %lld (%s, %s)", (long long)s->version, hash, name);
    snprintf(s->key, sizeof s->key, "version:%s", hash);
    free(name);
    return DRY_OK;
}

static int build_side(const struct cli_global *g, tsl_store *st, tsl_snapshot *snap,
                      const char *ref, bool is_against, struct side *s)
{
    int rc;

    if (is_against && strcmp(ref, "active") == 0) {
        tsl_buf key = TSL_BUF_INIT;
        if ((rc = tsl_rollout_plan(&s->plan, st, snap)) < 0) {
            cli_engine_error(g, rc, "cannot build the rollout in force");
            return DRY_ERROR;
        }
        if ((rc = tsl_rollout_state_key(&key, st)) < 0) {
            tsl_buf_free(&key);
            cli_engine_error(g, rc, "cannot read the rollout state");
            return DRY_ERROR;
        }
        snprintf(s->key, sizeof s->key, "%s", key.ptr);
        if (strcmp(key.ptr, "default") == 0)
            snprintf(s->label, sizeof s->label, "active: the default logic (no policy active)");
        else
            snprintf(s->label, sizeof s->label, "active: %s%s", key.ptr,
                     tsl_plan_staged(s->plan) ? " (staged)" : "");
        tsl_buf_free(&key);
        return DRY_OK;
    }
    if (strcmp(ref, "default") == 0 && !file_exists(ref)) {
        snprintf(s->label, sizeof s->label, "the default logic");
        snprintf(s->key, sizeof s->key, "default-logic");
    } else if ((rc = load_policy(g, st, ref, s)) != DRY_OK) {
        return rc;
    }
    if ((rc = tsl_plan_new(&s->plan, snap, s->policy)) < 0) {
        cli_engine_error(g, rc, "cannot bind %s to the inventory", ref);
        return DRY_ERROR;
    }
    return DRY_OK;
}

static void side_free(struct side *s)
{
    tsl_plan_free(s->plan);
    tsl_policy_free(s->policy);
}

int cmd_dryrun(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"against", required_argument, NULL, 'a'},
        {"clients", required_argument, NULL, 'c'},
        {"limit", required_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},
        {"html", required_argument, NULL, 'H'},
        {"fail-on", required_argument, NULL, 'f'},
        {"top", required_argument, NULL, 't'},
        {"now", required_argument, NULL, 'n'},
        {"author", required_argument, NULL, 'A'},
        {"expect", required_argument, NULL, 'E'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *policy = NULL, *against = "active", *html = NULL, *expect = NULL;
    const char *author = getenv("USER");
    bool json = false, recorded = false;
    unsigned fail_on = 0;
    uint64_t top = 20, limit = 0;
    int64_t now = 0;
    struct side before = {0}, after = {0};
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    tsl_dryrun *dr = NULL;
    tsl_buf out = TSL_BUF_INIT;
    tsl_dryrun_options opt;
    tsl_dryrun_summary sum;
    int c, rc, ret = DRY_ERROR;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'p': policy = optarg; break;
        case 'a': against = optarg; break;
        case 'c':
            if (strcmp(optarg, "all") != 0 && strcmp(optarg, "recorded") != 0) {
                cli_usage_error(g, "--clients takes all or recorded, not \"%s\"", optarg);
                return DRY_ERROR;
            }
            recorded = strcmp(optarg, "recorded") == 0;
            break;
        case 'l':
            if (cli_parse_uint(g, "--limit", optarg, UINT64_MAX, &limit) != CLI_OK)
                return DRY_ERROR;
            break;
        case 'j': json = true; break;
        case 'H': html = optarg; break;
        case 'f':
            if (tsl_dryrun_cond_parse(&fail_on, optarg) < 0) {
                cli_usage_error(g, "--fail-on: %s", tsl_error_last());
                return DRY_ERROR;
            }
            break;
        case 't':
            if (cli_parse_uint(g, "--top", optarg, 10000, &top) != CLI_OK)
                return DRY_ERROR;
            break;
        case 'n':
            if (cli_parse_time(g, "--now", optarg, &now) != CLI_OK)
                return DRY_ERROR;
            break;
        case 'A': author = optarg; break;
        case 'E':
            if (tsl_dryrun_expect_check(optarg) < 0) {
                cli_usage_error(g, "--expect: %s", tsl_error_last());
                return DRY_ERROR;
            }
            expect = optarg;
            break;
        case 'h': fputs(usage, stdout); return DRY_OK;
        default: cli_getopt_error(g, c, argv); return DRY_ERROR;
        }
    }
    if (optind < argc) {
        cli_usage_error(g, "unexpected argument \"%s\"", argv[optind]);
        return DRY_ERROR;
    }
    if (!policy) {
        cli_usage_error(g, "--policy NEW.lua is required");
        return DRY_ERROR;
    }
    if (json && html) {
        cli_usage_error(g, "--json and --html go to different places: give one");
        return DRY_ERROR;
    }
    if (cli_require_db(g) != CLI_OK || cli_require_store_file(g) != CLI_OK)
        return DRY_ERROR;

    /* read-write so the result can be recorded with the version (and an
     * older store is migrated); read-only when that is all we may do */
    if ((rc = tsl_store_open(&st, g->db, 0)) < 0 &&
        (rc = tsl_store_open(&st, g->db, TSL_STORE_READONLY)) < 0) {
        cli_store_open_error(g, rc);
        goto done;
    }
    if ((rc = tsl_snapshot_load(&snap, st, NULL)) < 0) {
        cli_engine_error(g, rc, "cannot load the inventory from %s", g->db);
        goto done;
    }
    if (build_side(g, st, snap, against, true, &before) != DRY_OK ||
        build_side(g, st, snap, policy, false, &after) != DRY_OK)
        goto done;

    tsl_dryrun_options_init(&opt);
    opt.now = now;
    opt.top = (unsigned)top;
    opt.before_label = before.label;
    opt.after_label = after.label;
    opt.expect = expect;
    opt.population = recorded ? "recorded requests from the broker's decision log"
                              : "every client of the inventory";
    if (json) {
        opt.json = json_to_stdout;
        opt.json_ud = NULL;
    }
    if ((rc = tsl_dryrun_new(&dr, before.plan, after.plan, &opt)) < 0) {
        cli_engine_error(g, rc, "cannot start the dry-run");
        goto done;
    }
    rc = recorded ? tsl_dryrun_add_recorded(dr, st, limit) : tsl_dryrun_add_inventory(dr);
    if (rc < 0 || (rc = tsl_dryrun_finish(dr)) < 0) {
        if (json)
            fputs("\n", stdout);
        cli_engine_error(g, rc, "dry-run failed");
        goto done;
    }
    tsl_dryrun_summary_get(dr, &sum);

    if (!json) {
        if ((rc = tsl_dryrun_text(&out, dr)) < 0) {
            cli_engine_error(g, rc, "cannot render the report");
            goto done;
        }
        if (cli_write_buf(g, &out) != CLI_OK)
            goto done;
    }
    if (html) {
        FILE *f;
        tsl_buf_clear(&out);
        if ((rc = tsl_dryrun_html(&out, dr)) < 0) {
            cli_engine_error(g, rc, "cannot render the HTML report");
            goto done;
        }
        if (!(f = fopen(html, "w"))) {
            cli_error(g, 0, "cannot write %s: %s", html, strerror(errno));
            goto done;
        }
        bool ok = fwrite(out.ptr, 1, out.len, f) == out.len;
        if (fclose(f) != 0 || !ok) {
            cli_error(g, 0, "cannot write %s", html);
            goto done;
        }
        printf("\nHTML report: %s\n", html);
    }
    if (fflush(stdout) != 0) {
        cli_error(g, 0, "cannot write to standard output");
        goto done;
    }

    /* recorded with the stored version, for `activate --require-dry-run` */
    if (after.version) {
        if ((rc = tsl_rollout_record_dryrun(st, after.version, before.key,
                                            recorded ? "recorded" : "inventory", fail_on, dr,
                                            author, now)) < 0)
            fprintf(stderr, "tsl dry-run: note: not recorded with version %lld: %s\n",
                    (long long)after.version, tsl_error_last());
        else if (!json)
            printf("recorded with policy version %lld (%s)\n", (long long)after.version,
                   sum.expected     ? sum.expect_met ? "expectations met" : "expectations not met"
                   : sum.conditions ? "conditions found"
                                    : "clean");
    }

    ret = DRY_OK;
    if (sum.expected && !sum.expect_met) {
        ret = DRY_CONDITION;
        fprintf(stderr, "tsl dry-run: --expect %s\n", tsl_dryrun_expect_verdict(dr));
    }
    /* met expectations cover every condition found: those are intended */
    if ((sum.conditions & fail_on) && !(sum.expected && sum.expect_met)) {
        ret = DRY_CONDITION;
        char conds[64];
        tsl_dryrun_cond_format(conds, sizeof conds, sum.conditions & fail_on);
        fprintf(stderr, "tsl dry-run: --fail-on condition occurred: %s\n", conds);
    }
done:
    tsl_buf_free(&out);
    tsl_dryrun_free(dr);
    side_free(&before);
    side_free(&after);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    return ret;
}
