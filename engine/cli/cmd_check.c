/*
 * cmd_check.c - `tsl check POLICY.lua [--db FILE]`: what is wrong with a
 * policy before it goes live.  tsl_policy_check does the work (syntax,
 * fields, names and globs against the inventory, blocking sites with
 * nobody to serve, fallback cycles, rules failing on sample clients); this
 * file adds luacheck when it is installed (Debian lua-check), and maps
 * the findings to the exit status.
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
#include <sys/wait.h>
#include <unistd.h>

static const char usage[] =
    "usage: tsl check POLICY.lua [--db FILE] [--now TIME] [--no-luacheck]\n"
    "\n"
    "Checks a policy without applying it.  Always: syntax errors and bad fields\n"
    "(with file:line), fallback cycles, order members outside allow.  With an\n"
    "inventory (--db, before or after the command): names and globs that match no\n"
    "server, unknown sites and groups, sites that block fallback while their\n"
    "approved set is empty or unavailable right now, rules that fail on a sample\n"
    "of real clients, every client the policy would block, send outside its\n"
    "country or site, or leave on a fallback tier (per site and group, with a\n"
    "few names), and subnets claimed by more than one site (each a warning, with\n"
    "the clients it decides).  Runs luacheck too when it is installed.\n"
    "\n"
    "  --db FILE       the inventory store to check names against; without it,\n"
    "                  only the text is checked (the \"Always\" list above)\n"
    "  --now TIME      judge availability as of this time (Unix seconds or\n"
    "                  2026-11-25T09:58:00Z; default: the current time)\n"
    "  --no-luacheck   do not run luacheck even when it is installed\n"
    "  -h, --help      this help\n"
    "\n"
    "exit status: 0 clean, 1 warnings only, 2 errors (or a usage error), 3 failure.\n";

/* The luacheck executable on PATH, or NULL. */
static const char *find_luacheck(char *buf, size_t len)
{
    const char *path = getenv("PATH");
    if (!path)
        return NULL;
    while (*path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n + 10 < len) {
            struct stat st;
            snprintf(buf, len, "%.*s/luacheck", (int)n, path);
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
                return buf;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* Runs luacheck on the file with the sandbox's globals; returns 0 clean, 1
 * warnings, 2 errors, -1 when it could not run.  Its report goes to stdout. */
static int run_luacheck(const struct cli_global *g, const char *exe, const char *file)
{
    static const char *const globals[] = {
        "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
        "rawlen", "rawget", "select", "setmetatable", "tonumber", "tostring", "type", "xpcall",
        "_VERSION", "string", "table", "math", "utf8",
        "defaults", "site", "group", "rule", "unassigned", /* policies */
        "policy", "inventory", "now", "test",           /* policy tests */
        NULL,
    };
    char *argv[64];
    int argc = 0, status;
    pid_t pid;

    argv[argc++] = (char *)"luacheck";
    argv[argc++] = (char *)"--no-color";
    argv[argc++] = (char *)"--codes";
    argv[argc++] = (char *)"--formatter=plain";
    argv[argc++] = (char *)"--std=none";
    argv[argc++] = (char *)"--no-unused-args";
    argv[argc++] = (char *)"--no-max-line-length";
    argv[argc++] = (char *)"--read-globals";
    for (const char *const *p = globals; *p; p++)
        argv[argc++] = (char *)*p;
    argv[argc++] = (char *)"--";
    argv[argc++] = (char *)file;
    argv[argc] = NULL;

    fflush(stdout);
    pid = fork();
    if (pid < 0) {
        cli_error(g, CLI_FAIL, "cannot run luacheck: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        execv(exe, argv);
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (!WIFEXITED(status) || WEXITSTATUS(status) > 2)
        return -1;
    return WEXITSTATUS(status);
}

/* The inventory's subnet conflicts, each a warning (tsl_subnet_conflicts). */
static int print_conflicts(const struct cli_global *g, const tsl_snapshot *snap, int *worst)
{
    tsl_buf list = TSL_BUF_INIT;
    size_t n = 0;
    int rc = tsl_subnet_conflicts(&list, &n, snap, TSL_FORMAT_TEXT);

    if (rc < 0) {
        rc = cli_engine_error(g, rc, "cannot list the subnet conflicts");
        goto done;
    }
    if (n > 0) {
        for (const char *p = list.ptr; p && *p;) {
            size_t k = strcspn(p, "\n");
            printf("inventory: warning: %.*s\n", (int)k, p);
            p += k + (p[k] == '\n');
        }
        if (*worst < 1)
            *worst = 1;
    }
    rc = CLI_OK;
done:
    tsl_buf_free(&list);
    return rc;
}

int cmd_check(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"now", required_argument, NULL, 'n'},
        {"no-luacheck", no_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct cli_global local = *g;
    struct cli_engine e;
    bool use_luacheck = true, have_engine = false;
    int64_t now = 0;
    char *src = NULL, exe[4096];
    size_t len = 0;
    tsl_buf out = TSL_BUF_INIT;
    int c, rc, worst = 0;

    memset(&e, 0, sizeof e);
    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            local.db = optarg;
            break;
        case 'n':
            if ((rc = cli_parse_time(g, "--now", optarg, &now)) != CLI_OK)
                return rc;
            break;
        case 'L':
            use_luacheck = false;
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind >= argc)
        return cli_usage_error(g, "name the policy file to check");
    if (optind + 1 < argc)
        return cli_usage_error(g, "unexpected argument '%s'", argv[optind + 1]);
    const char *file = argv[optind];
    const char *name = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;

    if ((rc = cli_read_file(g, file, &src, &len)) != CLI_OK)
        return rc;
    if (local.db) {
        if ((rc = cli_engine_open(&local, &e, NULL)) != CLI_OK)
            goto done;
        have_engine = true;
    }
    if ((rc = tsl_policy_check(&worst, &out, src, len, name, have_engine ? e.snap : NULL,
                               now)) < 0) {
        rc = cli_engine_error(g, rc, "cannot check %s", file);
        goto done;
    }
    if ((rc = cli_write_buf(g, &out)) != CLI_OK)
        goto done;
    if (have_engine && (rc = print_conflicts(g, e.snap, &worst)) != CLI_OK)
        goto done;

    if (use_luacheck && find_luacheck(exe, sizeof exe)) {
        printf("luacheck:\n");
        int lc = run_luacheck(g, exe, file);
        if (lc < 0)
            printf("  (luacheck could not run; its findings are missing)\n");
        else if (lc == 0)
            printf("  no findings\n");
        else if (lc > worst)
            worst = lc;
    }
    rc = worst == 0 ? CLI_OK : worst == 1 ? CLI_FINDINGS : CLI_USAGE;
done:
    tsl_buf_free(&out);
    free(src);
    if (have_engine)
        cli_engine_close(&e);
    return rc;
}
