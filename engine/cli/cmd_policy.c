/*
 * cmd_policy.c - `tsl --db FILE policy ACTION`: policy versions in the
 * store and their rollout, one command over two engine files:
 *
 *   load FILE           store a version (policy_store.c), not yet active;
 *                       --activate makes it active everywhere at once
 *   list                every version, where it is active, its last dry-run
 *   active              the policy in force: the base and staged sites
 *   show V, diff V1 V2  one version; a unified diff of two (rollout.c)
 *   status              the rollout in force and its history
 *   activate V          everywhere, or staged for --sites; --require-dry-run
 *   rollback            undo the newest activation still in force
 *   shadow V | --off    the broker evaluates V beside the active policy
 *   shadow-report       what shadow mode counted and sampled
 *
 * Every activation, `load`'s included, goes through the rollout, so
 * rollback can undo it.  Used by: main.c.  Needs: cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: tsl --db FILE policy ACTION [ARGS] [OPTIONS]\n"
    "\n"
    "  load FILE [--author A] [--comment C] [--activate]\n"
    "                      compile FILE (refused if it does not compile) and store its\n"
    "                      text as a version named by its content hash, not yet active\n"
    "                      (dry-run it, then `activate`); --activate makes it active\n"
    "                      everywhere at once.  Loading the same text again stores\n"
    "                      nothing new.\n"
    "  list [--json|--csv] every version: active (* everywhere, or its staged sites),\n"
    "                      author, time, comment, its last dry-run, shadow\n"
    "  active              the policy in force: the base version, staged sites\n"
    "  show V [--json]     one version: metadata, dry-runs, its text\n"
    "  diff V1 V2          unified diff of two versions' texts\n"
    "  status [--json]     the rollout in force and its history\n"
    "  activate V [--sites S1,S2] [--require-dry-run] [--author A] [--comment C]\n"
    "                      make V active everywhere, or only for the named sites\n"
    "                      (staged: the others keep theirs); --require-dry-run refuses\n"
    "                      unless a dry-run of V against the rollout in force recorded\n"
    "                      no condition\n"
    "  activate none       the default logic everywhere (no policy)\n"
    "  rollback [--author A]\n"
    "                      undo the newest activation still in force\n"
    "  shadow V | shadow --off\n"
    "                      the broker evaluates V beside the policy in force on every\n"
    "                      list request, answering with the policy in force, and\n"
    "                      counts the differences\n"
    "  shadow-report [--json]\n"
    "                      those counts and the newest samples\n"
    "\n"
    "V is a version number (3 or v3) or a prefix of its hash (sha256:1a2b or 1a2b).\n"
    "--author defaults to $USER.\n"
    "\n"
    "exit status: 0 done, 2 usage or input error (a policy that does not compile,\n"
    "unknown version or site, refused activation), 3 failure.\n";

struct popts {
    tsl_format fmt;
    bool require_dry_run, off, activate;
    const char *sites, *author, *comment;
};

/* Options of every action, anywhere on the line; *first: the action. */
static int parse(const struct cli_global *g, int argc, char **argv, struct popts *o,
                 int *first)
{
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'},
        {"csv", no_argument, NULL, 'v'},
        {"sites", required_argument, NULL, 's'},
        {"require-dry-run", no_argument, NULL, 'r'},
        {"author", required_argument, NULL, 'a'},
        {"comment", required_argument, NULL, 'c'},
        {"activate", no_argument, NULL, 'A'},
        {"no-activate", no_argument, NULL, 'N'}, /* the default; kept for scripts */
        {"off", no_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof *o);
    o->fmt = TSL_FORMAT_TEXT;
    o->author = getenv("USER");
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
        case 'v':
            if (o->fmt != TSL_FORMAT_TEXT)
                return cli_usage_error(g, "give one of --json and --csv, not both");
            o->fmt = c == 'j' ? TSL_FORMAT_JSON : TSL_FORMAT_CSV;
            break;
        case 's': o->sites = optarg; break;
        case 'r': o->require_dry_run = true; break;
        case 'a': o->author = optarg; break;
        case 'c': o->comment = optarg; break;
        case 'A': o->activate = true; break;
        case 'N': o->activate = false; break;
        case 'o': o->off = true; break;
        case 'h': fputs(usage, stdout); return -1;
        default: return cli_getopt_error(g, c, argv);
        }
    }
    *first = optind;
    return CLI_OK;
}

static int open_store(const struct cli_global *g, tsl_store **st, bool write)
{
    int rc;
    if ((rc = cli_require_store_file(g)) != CLI_OK)
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

static int policy_load(const struct cli_global *g, const struct popts *o, const char *file)
{
    tsl_store *st = NULL;
    tsl_policy *pol = NULL;
    char *src = NULL;
    size_t len = 0;
    int64_t id = 0;
    bool existed = false;
    int rc;
    const char *name = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;

    if ((rc = cli_read_file(g, file, &src, &len)) != CLI_OK)
        return rc;
    if ((rc = tsl_policy_compile(&pol, src, len, name)) < 0) {
        rc = cli_engine_error(g, rc, "%s does not compile, nothing stored", file);
        goto done;
    }
    if ((rc = tsl_store_open(&st, g->db, 0)) < 0) {
        rc = cli_store_open_error(g, rc);
        goto done;
    }
    if ((rc = tsl_store_policy_add(&id, &existed, st, pol, o->author, o->comment,
                                   o->activate ? TSL_POLICY_ACTIVATE : 0, 0)) < 0) {
        rc = cli_engine_error(g, rc, "cannot store %s", file);
        goto done;
    }
    printf("%s %s as version %s (id %lld)%s\n", existed ? "already stored:" : "stored", name,
           tsl_policy_version(pol), (long long)id,
           o->activate ? ", now active everywhere" : ", not active (see 'tsl policy activate')");
    rc = CLI_OK;
done:
    tsl_store_free(st);
    tsl_policy_free(pol);
    free(src);
    return rc;
}

/* The policy in force: the base, then each staged site (from the
 * rollout's state key, "base;Site=sha256:...;..."). */
static int policy_active(tsl_store *st)
{
    tsl_policy *pol = NULL;
    tsl_buf key = TSL_BUF_INIT;
    int err;

    if ((err = tsl_store_policy_active(&pol, st)) < 0 ||
        (err = tsl_rollout_state_key(&key, st)) < 0)
        goto done;
    if (pol)
        printf("%s (%s)\n", tsl_policy_version(pol), tsl_policy_name(pol));
    else
        printf("none (the default logic)\n");
    for (char *p = strchr(key.ptr, ';'); p; p = strchr(p + 1, ';')) {
        char *end = strchr(p + 1, ';'), *eq = strchr(p + 1, '=');
        if (eq && (!end || eq < end))
            printf("  staged: %.*s runs %.*s\n", (int)(eq - p - 1), p + 1,
                   (int)(end ? end - eq - 1 : (long)strlen(eq + 1)), eq + 1);
    }
done:
    tsl_policy_free(pol);
    tsl_buf_free(&key);
    return err;
}

static int policy_activate(tsl_store *st, const struct cli_global *g, const struct popts *o,
                           const char *version)
{
    const char *names[256];
    char *list = NULL;
    tsl_activate_options ao = {0};
    int rc;

    if (o->sites) {
        if (!(list = strdup(o->sites)))
            return cli_error(g, CLI_FAIL, "out of memory");
        ao.nsites = split_sites(list, names, sizeof names / sizeof *names);
        ao.sites = names;
        if (!ao.nsites) {
            free(list);
            return cli_usage_error(g, "--sites needs at least one site name");
        }
    }
    ao.require_dry_run = o->require_dry_run;
    ao.author = o->author;
    ao.comment = o->comment;
    if ((rc = tsl_rollout_activate(st, version, &ao)) == 0)
        printf("activated policy version %s %s%s\n", version, o->sites ? "for " : "everywhere",
               o->sites ? o->sites : "");
    free(list);
    return rc;
}

int cmd_policy(const struct cli_global *g, int argc, char **argv)
{
    struct popts o;
    tsl_store *st = NULL;
    tsl_buf out = TSL_BUF_INIT;
    int rc, first = 1;

    if ((rc = parse(g, argc, argv, &o, &first)) != CLI_OK)
        return rc < 0 ? CLI_OK : rc;
    if (first >= argc)
        return cli_usage_error(g, "name an action: load, list, active, show, diff, status, "
                                  "activate, rollback, shadow or shadow-report");
    const char *act = argv[first];
    char **args = argv + first + 1;
    int nargs = argc - first - 1;
    bool write = strcmp(act, "activate") == 0 || strcmp(act, "rollback") == 0 ||
                 strcmp(act, "shadow") == 0;

    if ((rc = cli_require_db(g)) != CLI_OK)
        return rc;
    if (strcmp(act, "load") == 0) {
        if ((rc = need_args(g, nargs, 1, "name the policy file to load")) != CLI_OK)
            return rc;
        return policy_load(g, &o, args[0]);
    }
    if (o.fmt == TSL_FORMAT_CSV && strcmp(act, "list") != 0)
        return cli_usage_error(g, "--csv is for `policy list`");

    if (strcmp(act, "list") == 0 || strcmp(act, "active") == 0 || strcmp(act, "status") == 0 ||
        strcmp(act, "shadow-report") == 0 || strcmp(act, "rollback") == 0) {
        if ((rc = need_args(g, nargs, 0, "")) != CLI_OK)
            return rc;
    } else if (strcmp(act, "show") == 0 || strcmp(act, "activate") == 0) {
        if ((rc = need_args(g, nargs, 1, "name a version")) != CLI_OK)
            return rc;
    } else if (strcmp(act, "diff") == 0) {
        if ((rc = need_args(g, nargs, 2, "diff needs two versions")) != CLI_OK)
            return rc;
    } else if (strcmp(act, "shadow") == 0) {
        if ((rc = need_args(g, nargs, o.off ? 0 : 1, "shadow needs a version (or --off)")) !=
            CLI_OK)
            return rc;
    } else {
        return cli_usage_error(g, "no action \"%s\" (see `tsl policy --help`)", act);
    }
    if ((rc = open_store(g, &st, write)) != CLI_OK)
        return rc;

    if (strcmp(act, "list") == 0) {
        rc = tsl_store_policy_list(&out, st, o.fmt);
    } else if (strcmp(act, "active") == 0) {
        rc = policy_active(st);
    } else if (strcmp(act, "status") == 0) {
        rc = tsl_rollout_status(&out, st, o.fmt);
    } else if (strcmp(act, "shadow-report") == 0) {
        rc = tsl_rollout_shadow_report(&out, st, o.fmt);
    } else if (strcmp(act, "show") == 0) {
        rc = tsl_rollout_show(&out, st, args[0], o.fmt);
    } else if (strcmp(act, "diff") == 0) {
        rc = tsl_rollout_diff(&out, st, args[0], args[1]);
    } else if (strcmp(act, "activate") == 0) {
        if ((rc = policy_activate(st, g, &o, args[0])) > 0) /* reported already */
            goto done;
    } else if (strcmp(act, "rollback") == 0) {
        char what[512];
        if ((rc = tsl_rollout_rollback(st, o.author, what, sizeof what)) == 0)
            printf("rolled back: %s\n", what);
    } else { /* shadow */
        if ((rc = tsl_rollout_shadow_set(st, o.off ? NULL : args[0], o.author, 0)) == 0 && o.off)
            printf("shadow mode off\n");
        else if (rc == 0)
            printf("shadowing policy version %s: the broker evaluates it beside the policy in "
                   "force (counters restart)\n",
                   args[0]);
    }
    if (rc < 0) {
        rc = cli_engine_error(g, rc, "policy %s", act);
        goto done;
    }
    rc = cli_write_buf(g, &out);
done:
    tsl_buf_free(&out);
    tsl_store_free(st);
    return rc;
}
