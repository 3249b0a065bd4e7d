/*
 * cmd_policy.c - `tsl --db FILE policy load|list|active`: policy versions
 * in the store.  `load` compiles a policy file and stores its text as a
 * version (its content hash) with author, time and comment, and makes it
 * the active policy that list, explain, report and doctor use when no
 * --policy is given.
 *
 * Used by: main.c.  Needs: cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: tsl --db FILE policy load POLICY.lua [--author NAME] [--comment TEXT]\n"
    "                                             [--no-activate]\n"
    "       tsl --db FILE policy list [--json | --csv]\n"
    "       tsl --db FILE policy active\n"
    "\n"
    "load     compile POLICY.lua (refused if it does not compile) and store its text\n"
    "         as a version named by its content hash, with author, time and comment;\n"
    "         it becomes the active policy unless --no-activate.  Loading the same\n"
    "         text again stores nothing new.\n"
    "list     every stored version, oldest first; * marks the active one\n"
    "active   the active policy's version, or \"none\" (the default logic)\n"
    "\n"
    "  --author NAME    who loads it (default: $USER)\n"
    "  --comment TEXT   why\n"
    "  --no-activate    store it without making it active\n"
    "  --json, --csv    list as JSON or CSV\n"
    "  -h, --help       this help\n"
    "\n"
    "exit status: 0 done, 2 usage or input error (a policy that does not compile),\n"
    "3 failure.\n";

static int policy_load(const struct cli_global *g, const char *file, const char *author,
                       const char *comment, bool activate)
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
    if ((rc = tsl_store_policy_add(&id, &existed, st, pol, author, comment,
                                   activate ? TSL_POLICY_ACTIVATE : 0, 0)) < 0) {
        rc = cli_engine_error(g, rc, "cannot store %s", file);
        goto done;
    }
    printf("%s %s as version %s (id %lld)%s\n", existed ? "already stored:" : "stored", name,
           tsl_policy_version(pol), (long long)id, activate ? ", now active" : "");
    rc = CLI_OK;
done:
    tsl_store_free(st);
    tsl_policy_free(pol);
    free(src);
    return rc;
}

static int policy_list(const struct cli_global *g, tsl_format fmt, bool active_only)
{
    tsl_store *st = NULL;
    tsl_policy *pol = NULL;
    tsl_buf out = TSL_BUF_INIT;
    int rc;

    if ((rc = cli_require_store_file(g)) != CLI_OK)
        return rc;
    if ((rc = tsl_store_open(&st, g->db, TSL_STORE_READONLY)) < 0)
        return cli_store_open_error(g, rc);
    if (active_only) {
        if ((rc = tsl_store_policy_active(&pol, st)) < 0) {
            rc = cli_engine_error(g, rc, "cannot read the active policy");
            goto done;
        }
        if (pol)
            printf("%s (%s)\n", tsl_policy_version(pol), tsl_policy_name(pol));
        else
            printf("none (the default logic)\n");
        rc = CLI_OK;
        goto done;
    }
    if ((rc = tsl_store_policy_list(&out, st, fmt)) < 0) {
        rc = cli_engine_error(g, rc, "cannot list policy versions");
        goto done;
    }
    rc = cli_write_buf(g, &out);
done:
    tsl_buf_free(&out);
    tsl_policy_free(pol);
    tsl_store_free(st);
    return rc;
}

int cmd_policy(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"author", required_argument, NULL, 'a'},
        {"comment", required_argument, NULL, 'c'},
        {"no-activate", no_argument, NULL, 'N'},
        {"json", no_argument, NULL, 'j'},
        {"csv", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *author = getenv("USER"), *comment = NULL;
    bool activate = true;
    tsl_format fmt = TSL_FORMAT_TEXT;
    int c, rc;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'a':
            author = optarg;
            break;
        case 'c':
            comment = optarg;
            break;
        case 'N':
            activate = false;
            break;
        case 'j':
        case 'v':
            if (fmt != TSL_FORMAT_TEXT)
                return cli_usage_error(g, "give one of --json and --csv, not both");
            fmt = c == 'j' ? TSL_FORMAT_JSON : TSL_FORMAT_CSV;
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind >= argc)
        return cli_usage_error(g, "name an action: load, list or active");
    const char *action = argv[optind];
    if ((rc = cli_require_db(g)) != CLI_OK)
        return rc;
    if (strcmp(action, "load") == 0) {
        if (optind + 1 >= argc)
            return cli_usage_error(g, "name the policy file to load");
        if (optind + 2 < argc)
            return cli_usage_error(g, "unexpected argument '%s'", argv[optind + 2]);
        return policy_load(g, argv[optind + 1], author, comment, activate);
    }
    if (optind + 1 < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind + 1]);
    if (strcmp(action, "list") == 0)
        return policy_list(g, fmt, false);
    if (strcmp(action, "active") == 0)
        return policy_list(g, fmt, true);
    return cli_usage_error(g, "no action \"%s\": choose load, list or active", action);
}
