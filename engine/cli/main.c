/*
 * main.c - the `tsl` command: global options, the command table, dispatch.
 *
 *   tsl [--db FILE] COMMAND [ARGS]     tsl --help     tsl COMMAND --help
 *
 * Global options (--db) go before or after the command: `tsl --db FILE
 * serve` and `tsl serve --db FILE` are the same.  This file takes them out
 * wherever they are, so a command never sees them; after "--" nothing is
 * taken, and an option value that is literally "--db" is written
 * `--comment=--db`.  Each command lives in
 * its own cmd_NAME.c and parses its own options; this file only finds it.  To add a command: write cmd_NAME.c, declare
 * cmd_NAME() in cli.h, add one line to `commands` below.
 *
 * Used by: users and scripts.  Needs: cli.h.
 */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#ifndef TSL_VERSION
#define TSL_VERSION "0.1.0"
#endif

static const struct command {
    const char *name;
    cli_cmd_fn fn;
    const char *help; /* one line, for `tsl --help` */
} commands[] = {
    /* getting started */
    {"demo", cmd_demo, "tour a bundled demo estate in a throwaway store"},
    /* inventory */
    {"import", cmd_import, "load an inventory (JSON document or CSV exports) into the store"},
    {"gen-estate", cmd_gen_estate, "fill the store with a synthetic estate (for benchmarks)"},
    /* decisions */
    {"list", cmd_list, "the Task Server list one client request receives"},
    {"explain", cmd_explain, "every step of a decision with its reason, then the list"},
    {"report", cmd_report, "active-servers | server-clients | client-assignments | fallback"},
    {"doctor", cmd_doctor, "the ITMS validation checklist for one client"},
    /* policies: edit, check, test, dry-run, then roll out */
    {"check", cmd_check, "what is wrong with a policy file (syntax, names, stranded sites)"},
    {"test", cmd_test, "run admin-written policy tests (TAP)"},
    {"dry-run", cmd_dryrun, "what a policy change would do to every client, before rollout"},
    {"policy", cmd_policy,
     "versions and rollout: load | list | show | diff | activate | rollback | shadow"},
    /* the broker */
    {"serve", cmd_serve, "run the broker: the HTTP service CTAs ask for their lists"},
    {"servers", cmd_servers, "Task Servers waiting for approval: pending | approve | reject"},
    {"agent", cmd_agent, "run one reference Client Task Agent against a broker"},
    {"simulate", cmd_simulate, "run fleet simulations: broker, Task Servers, thousands of CTAs"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const struct command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_help(FILE *f)
{
    fprintf(f,
            "usage: tsl [--db FILE] COMMAND [ARGS]\n"
            "\n"
            "Decides which ITMS Task Servers a Client Task Agent may use, and in what order.\n"
            "\n"
            "global options (before or after the command):\n"
            "  --db FILE      the SQLite inventory store (created by `import` or\n"
            "                 `gen-estate`); the commands that read it need it, `serve`\n"
            "                 without it serves the bundled demo estate\n"
            "  -h, --help     this help; `tsl COMMAND --help` for a command's own\n"
            "  -V, --version  print the version\n"
            "\n"
            "On a terminal, long work (import, gen-estate, dry-run, check, simulate)\n"
            "shows its progress on stderr; on a pipe or file it stays quiet.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
    fprintf(f,
            "\n"
            "exit status: 0 ok, 1 findings (a command says when), 2 usage or input error,\n"
            "3 the engine or system failed.\n"
            "Start with `tsl demo`.\n");
}

/* Takes the global options that follow the command name out of argv
 * (argv[0] is the command), compacting the rest; stops at "--", after which
 * everything is the command's.  Returns CLI_OK or a usage error. */
static int take_globals(struct cli_global *g, int *argc, char **argv)
{
    int in = 1, out = 1;
    for (; in < *argc; in++) {
        const char *a = argv[in];
        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "--db") == 0) {
            if (in + 1 >= *argc)
                return cli_usage_error(g, "option '--db' needs a value");
            g->db = argv[++in];
        } else if (strncmp(a, "--db=", 5) == 0) {
            g->db = a + 5;
        } else {
            argv[out++] = argv[in];
            continue;
        }
        if (!g->db[0])
            return cli_error(g, CLI_USAGE, "--db needs a file name");
    }
    for (; in < *argc; in++)
        argv[out++] = argv[in];
    argv[out] = NULL;
    *argc = out;
    return CLI_OK;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct cli_global g = {"tsl", NULL, NULL};
    int c;

    cli_getopt_reset();
    /* '+': stop at the command name, its options are its own. */
    while ((c = getopt_long(argc, argv, "+:hV", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            if (!optarg[0])
                return cli_error(&g, CLI_USAGE, "--db needs a file name");
            g.db = optarg;
            break;
        case 'h':
            print_help(stdout);
            return CLI_OK;
        case 'V':
            printf("tsl %s\n", TSL_VERSION);
            return CLI_OK;
        default:
            return cli_getopt_error(&g, c, argv);
        }
    }
    if (optind >= argc) {
        print_help(stderr);
        return CLI_USAGE;
    }

    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        /* `tsl help` and `tsl help COMMAND` */
        if (optind + 1 >= argc) {
            print_help(stdout);
            return CLI_OK;
        }
        name = argv[optind + 1];
        const struct command *cmd = find_command(name);
        if (!cmd)
            return cli_error(&g, CLI_USAGE, "no command '%s' (see 'tsl --help')", name);
        char help[] = "--help";
        char *hargv[] = {argv[optind + 1], help, NULL};
        g.cmd = cmd->name;
        return cmd->fn(&g, 2, hargv);
    }

    const struct command *cmd = find_command(name);
    if (!cmd)
        return cli_error(&g, CLI_USAGE, "no command '%s' (see 'tsl --help')", name);
    g.cmd = cmd->name;
    int cargc = argc - optind, rc;
    if ((rc = take_globals(&g, &cargc, argv + optind)) != CLI_OK)
        return rc;
    cli_progress_start(&g);
    rc = cmd->fn(&g, cargc, argv + optind);
    cli_progress_stop();
    return rc;
}
