/*
 * cli.h - what every `tsl` command shares: the global options, the command
 * signature, exit codes and the small helpers in cli_util.c.
 *
 * Adding a command is three things: a file engine/cli/cmd_NAME.c defining
 * cmd_NAME(), one declaration below, and one line in the table in main.c.
 * A command parses its own options with getopt_long (call cli_getopt_reset()
 * first), answers --help on stdout with exit 0, and returns an exit code.
 * Global options (--db) never reach it: main.c takes them out of argv
 * wherever they are, before or after the command name.
 * The CLI prints and exits; the engine it calls (tsl.h) never does.
 *
 * Used by: every engine/cli/cmd_*.c and main.c.  Needs: tsl.h.
 */
#ifndef TSL_CLI_H
#define TSL_CLI_H

#include "tsl.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* Exit codes of every command. */
enum {
    CLI_OK = 0,       /* success */
    CLI_FINDINGS = 1, /* ran, and found problems (doctor's FAIL, check's findings) */
    CLI_USAGE = 2,    /* usage or input error: bad option, bad IP, bad file */
    CLI_FAIL = 3      /* the engine or the system failed (store I/O, out of memory) */
};

/* Global options, given before or after the command name. */
struct cli_global {
    const char *prog; /* "tsl" */
    const char *db;   /* --db FILE, or NULL */
    const char *cmd;  /* the command name, for messages ("list") */
};

/* Every command: argv[0] is the command name, options follow. */
typedef int (*cli_cmd_fn)(const struct cli_global *g, int argc, char **argv);

/* ---- commands (one file each) ---- */
int cmd_import(const struct cli_global *g, int argc, char **argv);
int cmd_list(const struct cli_global *g, int argc, char **argv);
int cmd_explain(const struct cli_global *g, int argc, char **argv);
int cmd_report(const struct cli_global *g, int argc, char **argv);
int cmd_doctor(const struct cli_global *g, int argc, char **argv);
int cmd_gen_estate(const struct cli_global *g, int argc, char **argv);
int cmd_demo(const struct cli_global *g, int argc, char **argv);
int cmd_check(const struct cli_global *g, int argc, char **argv);
int cmd_test(const struct cli_global *g, int argc, char **argv);
int cmd_dryrun(const struct cli_global *g, int argc, char **argv);
/* `tsl policy`: versions (load, list, show, diff), the rollout (active,
 * status, activate, rollback) and shadow mode; cmd_policy.c. */
int cmd_policy(const struct cli_global *g, int argc, char **argv);
int cmd_serve(const struct cli_global *g, int argc, char **argv);
/* Pending Task Servers: pending, approve, reject; cmd_servers.c. */
int cmd_servers(const struct cli_global *g, int argc, char **argv);
int cmd_agent(const struct cli_global *g, int argc, char **argv);
int cmd_simulate(const struct cli_global *g, int argc, char **argv);

/* ------------------------------------------------------------------------
 * Helpers (cli_util.c)
 * ---------------------------------------------------------------------- */

/* Prints "tsl CMD: message" on stderr and returns `code`. */
int cli_error(const struct cli_global *g, int code, const char *fmt, ...) CLI_PRINTF(3, 4);
/* Prints "tsl CMD: what: <tsl_error_last() or tsl_strerror(rc)>" on stderr
 * (just the engine's message when fmt is NULL) and returns the exit code
 * for engine error `rc` (cli_exit_code). */
int cli_engine_error(const struct cli_global *g, int rc, const char *fmt, ...) CLI_PRINTF(3, 4);
/* Exit code for an engine error: input problems (invalid, not found,
 * policy, exists, limit) give CLI_USAGE, the rest CLI_FAIL. */
int cli_exit_code(int rc);
/* Usage error with a pointer to --help: "tsl CMD: msg (see 'tsl CMD --help')". */
int cli_usage_error(const struct cli_global *g, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Resets getopt for a command's own parsing (opterr off: the command
 * reports errors through cli_getopt_error). */
void cli_getopt_reset(void);
/* Reports getopt's '?' or ':' result for argv; returns CLI_USAGE. */
int cli_getopt_error(const struct cli_global *g, int c, char **argv);

/* CLI_USAGE with a message when --db was not given. */
int cli_require_db(const struct cli_global *g);
/* Reports a failed tsl_store_open (the engine's message names the file):
 * a file that is not a store, or cannot be opened, is an input error. */
int cli_store_open_error(const struct cli_global *g, int rc);
/* CLI_USAGE with a message when the --db file does not exist (commands that
 * read the store; import and gen-estate create it). */
int cli_require_store_file(const struct cli_global *g);

/* Reads a whole file into *out (malloc'd, NUL-terminated), *len its size.
 * On failure prints a message naming the file and returns CLI_USAGE. */
int cli_read_file(const struct cli_global *g, const char *path, char **out, size_t *len);

/* Parses --now: Unix seconds ("1795600000") or ISO 8601 UTC
 * ("2026-11-25T09:58:00Z", "2026-11-25 09:58:00", "2026-11-25").
 * Returns 0 or CLI_USAGE after printing a message naming `opt`. */
int cli_parse_time(const struct cli_global *g, const char *opt, const char *text,
                   int64_t *out);
/* Parses a non-negative integer into *out, at most `max`. */
int cli_parse_uint(const struct cli_global *g, const char *opt, const char *text,
                   uint64_t max, uint64_t *out);
/* Formats Unix seconds as "2026-11-25T09:58:00Z" into dst (>= 21 bytes). */
void cli_format_time(char *dst, size_t len, int64_t t);

/* Opens the --db store, loads a snapshot and binds a plan: the policy in
 * `policy_path` when given (compiled with tsl_policy_compile), else the
 * policy in force (tsl_rollout_plan: the active version and its staged
 * sites), else the default logic when no version is active.  Everything
 * a command needs to decide, in one call. */
struct cli_engine {
    tsl_store *store;
    tsl_snapshot *snap;
    tsl_policy *policy; /* the --policy file's; NULL without one */
    tsl_plan *plan;
    tsl_worker *worker;
};
int cli_engine_open(const struct cli_global *g, struct cli_engine *e, const char *policy_path);
void cli_engine_close(struct cli_engine *e);

/* Writes a buffer to stdout; CLI_FAIL when stdout fails. */
int cli_write_buf(const struct cli_global *g, const tsl_buf *b);

/* The directory holding policies/demo (the demo estate) and
 * policies/examples: share/tsl beside the installed binary
 * (../share/tsl from its bin/), else the source tree a build-tree binary
 * was built from, else the compiled-in install data dir; NULL when none
 * has the demo estate. */
const char *cli_data_dir(void);

/* --json / --csv: sets *fmt to `want`; a usage error when the other one
 * was already given. */
int cli_set_format(const struct cli_global *g, tsl_format *fmt, tsl_format want);
/* One value of a repeatable list option (--ip): "A,B" adds A and B.
 * Splits `arg` in place (argv is writable), appends to items[*n]; a usage
 * error for an empty item or past `max` items. */
int cli_list_add(const struct cli_global *g, const char *opt, char *arg, const char **items,
                 size_t *n, size_t max);

/* Progress of long engine work (tsl_progress_set), drawn on stderr when it
 * is a terminal and the work lasts: one line rewritten in place, erased
 * when the work ends.  main.c starts it around every command; messages
 * (cli_error) erase the line first. */
void cli_progress_start(const struct cli_global *g);
void cli_progress_stop(void);

#endif
