/*
 * cmd_policy_admin.c - `tsl policy SUBCOMMAND`: the policy lifecycle after
 * a version is stored.  Thin glue over tsl_rollout_* (rollout.c):
 *
 *   list                      every version, its activation and last dry-run
 *   show V                    one version: metadata, dry-runs, text
 *   diff V1 V2                a unified diff of two versions
 *   status                    the rollout in force and its history
 *   activate V [--sites A,B]  everywhere, or staged for named sites
 *            [--require-dry-run] [--author NAME] [--comment TEXT]
 *   rollback                  undo the newest activation still in force
 *   shadow V | shadow --off   evaluate V beside the active policy (broker)
 *   shadow-report [--json]    what shadow mode counted and sampled
 *
 * `tsl policy load` belongs to the policy layer's cmd_policy.c, which hands
 * every other subcommand to cmd_policy_admin().  Until that lands, a
 * provisional `load` lives here (policy_load_provisional below).
 *
 * Used by: main.c (or cmd_policy.c).  Needs: cli.h.
 */
#include "cli.h"
#include "rollout.h" /* rollout_version_add: the provisional load only */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: tsl --db FILE policy SUBCOMMAND [ARGS]\n"
    "\n"
    "  load FILE [--author A] [--comment C]   store a policy file as a new version\n"
    "  list [--json]                          every version: hash, author, time, comment,\n"
    "                                         where it is active, its last dry-run\n"
    "  show V [--json]                        one version: metadata, dry-runs, its text\n"
    "  diff V1 V2                             unified diff of two versions' texts\n"
    "  status [--json]                        the rollout in force and its history\n"
    "  activate V [--sites S1,S2] [--require-dry-run] [--author A] [--comment C]\n"
    "                                         make V active everywhere, or only for the\n"
    "                                         named sites (staged: the others keep\n"
    "                                         theirs); --require-dry-run refuses unless a\n"
    "                                         dry-run of V against the rollout in force\n"
    "                                         recorded no condition\n"
    "  rollback [--author A]                  undo the newest activation still in force\n"
    "  shadow V | shadow --off                the broker evaluates V beside the active\n"
    "                                         policy on every request, answering with the\n"
    "                                         active one, and counts the differences\n"
    "  shadow-report [--json]                 those counts and the newest samples\n"
    "\n"
    "V is a version number (3 or v3) or a prefix of its hash (sha256:1a2b or 1a2b).\n"
    "\n"
    "exit status: 0 done, 2 usage or input error (unknown version or site, refused\n"
    "activation), 3 the store failed.\n";

/* Options every subcommand may take. */
struct popts {
    bool json, require_dry_run, off;
    const char *sites, *author, *comment;
};

static int parse(const struct cli_global *g, int argc, char **argv, struct popts *o,
                 int *first_arg)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"sites", required_argument, NULL, 's'},
        {"require-dry-run", no_argument, NULL, 'r'},
        {"author", required_argument, NULL, 'a'},
        {"comment", required_argument, NULL, 'c'},
        {"off", no_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof *o);
    o->author = getenv("USER");
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': o->json = true; break;
        case 's': o->sites = optarg; break;
        case 'r': o->require_dry_run = true; break;
        case 'a': o->author = optarg; break;
        case 'c': o->comment = optarg; break;
        case 'o': o->off = true; break;
        case 'h': fputs(usage, stdout); return -1;
        default: return cli_getopt_error(g, c, argv);
        }
    }
    *first_arg = optind;
    return CLI_OK;
}

static int open_store(const struct cli_global *g, tsl_store **st, bool write)
{
    int rc;
    if ((rc = cli_require_db(g)) != CLI_OK || (rc = cli_require_store_file(g)) != CLI_OK)
        return rc;
    if ((rc = tsl_store_open(st, g->db, write ? 0 : TSL_STORE_READONLY)) < 0)
        return cli_store_open_error(g, rc);
    return CLI_OK;
}

static int need_args(const struct cli_global *g, int have, int want, const char *what)
{
    if (have < want)
        return cli_usage_error(g, "%s", what);
    if (have > want)
        return cli_usage_error(g, "too many arguments");
    return CLI_OK;
}

/* Splits "London,Paris" in place into at most `max` names. */
static size_t split_sites(char *list, const char **out, size_t max)
{
    size_t n = 0;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (*t)
            out[n++] = t;
    }
    return n;
}

static int policy_load_provisional(const struct cli_global *g, const struct popts *o,
                                   const char *path)
{
    tsl_store *st = NULL;
    char *src = NULL;
    size_t len;
    int64_t id;
    int rc;

    if ((rc = cli_read_file(g, path, &src, &len)) != CLI_OK)
        return rc;
    if ((rc = open_store(g, &st, true)) != CLI_OK)
        goto done;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if ((rc = rollout_version_add(&id, st, src, len, base, o->author, o->comment, 0)) < 0) {
        if (rc == TSL_EEXISTS) {
            printf("unchanged: %s\n", tsl_error_last());
            rc = CLI_OK;
        } else {
            rc = cli_engine_error(g, rc, "cannot store %s", path);
        }
        goto done;
    }
    char hash[64] = "", ref[32];
    snprintf(ref, sizeof ref, "%lld", (long long)id);
    if (tsl_rollout_resolve(&id, hash, sizeof hash, st, ref) < 0)
        hash[0] = '\0';
    printf("stored %s as policy version %lld (%s)\n", path, (long long)id, hash);
    rc = CLI_OK;
done:
    free(src);
    tsl_store_free(st);
    return rc;
}

int cmd_policy_admin(const struct cli_global *g, int argc, char **argv)
{
    struct popts o;
    tsl_store *st = NULL;
    tsl_buf out = TSL_BUF_INIT;
    const char *sub;
    int rc, first = 1;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    sub = argv[1];
    if ((rc = parse(g, argc - 1, argv + 1, &o, &first)) != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    char **args = argv + 1 + first;
    int nargs = argc - 1 - first;
    tsl_format fmt = o.json ? TSL_FORMAT_JSON : TSL_FORMAT_TEXT;

    if (strcmp(sub, "load") == 0) {
        if ((rc = need_args(g, nargs, 1, "load needs a policy file")) != CLI_OK)
            return rc;
        return policy_load_provisional(g, &o, args[0]);
    }
    if (strcmp(sub, "list") == 0 || strcmp(sub, "status") == 0 ||
        strcmp(sub, "shadow-report") == 0) {
        if ((rc = need_args(g, nargs, 0, "")) != CLI_OK ||
            (rc = open_store(g, &st, false)) != CLI_OK)
            goto done;
        rc = strcmp(sub, "list") == 0     ? tsl_rollout_list(&out, st, fmt)
             : strcmp(sub, "status") == 0 ? tsl_rollout_status(&out, st, fmt)
                                          : tsl_rollout_shadow_report(&out, st, fmt);
    } else if (strcmp(sub, "show") == 0) {
        if ((rc = need_args(g, nargs, 1, "show needs a version")) != CLI_OK ||
            (rc = open_store(g, &st, false)) != CLI_OK)
            goto done;
        rc = tsl_rollout_show(&out, st, args[0], fmt);
    } else if (strcmp(sub, "diff") == 0) {
        if ((rc = need_args(g, nargs, 2, "diff needs two versions")) != CLI_OK ||
            (rc = open_store(g, &st, false)) != CLI_OK)
            goto done;
        rc = tsl_rollout_diff(&out, st, args[0], args[1]);
    } else if (strcmp(sub, "activate") == 0) {
        const char *names[256];
        char *list = NULL;
        tsl_activate_options ao = {0};
        if ((rc = need_args(g, nargs, 1, "activate needs a version")) != CLI_OK ||
            (rc = open_store(g, &st, true)) != CLI_OK)
            goto done;
        if (o.sites) {
            if (!(list = strdup(o.sites))) {
                rc = cli_error(g, CLI_FAIL, "out of memory");
                goto done;
            }
            ao.nsites = split_sites(list, names, sizeof names / sizeof *names);
            ao.sites = names;
            if (!ao.nsites) {
                free(list);
                rc = cli_usage_error(g, "--sites needs at least one site name");
                goto done;
            }
        }
        ao.require_dry_run = o.require_dry_run;
        ao.author = o.author;
        ao.comment = o.comment;
        rc = tsl_rollout_activate(st, args[0], &ao);
        if (rc == 0) {
            tsl_buf_free(&out);
            rc = tsl_buf_printf(&out, "activated policy version %s %s%s\n", args[0],
                                o.sites ? "for " : "everywhere", o.sites ? o.sites : "");
        }
        free(list);
    } else if (strcmp(sub, "rollback") == 0) {
        char what[512];
        if ((rc = need_args(g, nargs, 0, "")) != CLI_OK ||
            (rc = open_store(g, &st, true)) != CLI_OK)
            goto done;
        if ((rc = tsl_rollout_rollback(st, o.author, what, sizeof what)) == 0)
            rc = tsl_buf_printf(&out, "rolled back: %s\n", what);
    } else if (strcmp(sub, "shadow") == 0) {
        if (o.off ? (rc = need_args(g, nargs, 0, "")) != CLI_OK
                  : (rc = need_args(g, nargs, 1, "shadow needs a version (or --off)")) != CLI_OK)
            goto done;
        if ((rc = open_store(g, &st, true)) != CLI_OK)
            goto done;
        rc = tsl_rollout_shadow_set(st, o.off ? NULL : args[0], o.author, 0);
        if (rc == 0)
            rc = o.off ? tsl_buf_puts(&out, "shadow mode off\n")
                       : tsl_buf_printf(&out, "shadowing policy version %s: the broker evaluates "
                                              "it beside the active policy (counters restart)\n",
                                        args[0]);
    } else {
        return cli_usage_error(g, "unknown policy subcommand \"%s\"", sub);
    }
    if (rc < 0) {
        rc = cli_engine_error(g, rc, "policy %s", sub);
        goto done;
    }
    rc = cli_write_buf(g, &out);
done:
    tsl_buf_free(&out);
    tsl_store_free(st);
    return rc;
}
