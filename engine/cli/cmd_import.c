/*
 * cmd_import.c - `tsl import`: loads inventory documents (JSON) and CSV
 * exports into the --db store, creating it on first use.
 *
 * Each JSON document is one transaction; all CSV files of one run are
 * imported together in one transaction (a clients.csv may name sites from
 * a sites.csv next to it).  Nothing of a bad file is written.
 *
 * Used by: main.c.  Needs: cli.h, jansson (to count what a document held).
 */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char usage[] =
    "usage: tsl --db FILE import [--ignore-unknown] [--timezone ZONE]\n"
    "                            [FILE.json]... [[--kind KIND] FILE.csv]...\n"
    "       tsl --db FILE import --csv FILE [--csv FILE]...\n"
    "\n"
    "Upserts an inventory into the store (created if missing).  A .json file is an\n"
    "inventory document {\"sites\": [...], \"task_servers\": [...], \"clients\": [...],\n"
    "\"connection_errors\": [...]}; a .csv file is one table as exported from ITMS\n"
    "reports or the console, its kind taken from its name (sites.csv, task_servers.csv,\n"
    "clients.csv, connection_errors.csv) unless --kind names it; columns are matched\n"
    "by ITMS's spellings too (\"Resource Guid\", \"IP Address\", \"Subnet Mask\", ...).\n"
    "Each JSON file is one transaction; the CSV files go in together, in one.  A bad\n"
    "record refuses its whole file with a message naming the file, the record or\n"
    "line, and the field.  Every field, column and spelling: docs/inventory.md.\n"
    "\n"
    "Warnings go to stderr: CSV columns ignored, subnets claimed by several sites\n"
    "(imported; the longest prefix wins, then the first site by name), clients with\n"
    "neither an IP nor a site.\n"
    "\n"
    "  --csv FILE         import FILE as CSV whatever its name\n"
    "  --kind KIND        the kind of the next CSV file: sites | task_servers | clients |\n"
    "                     connection_errors\n"
    "  --ignore-unknown   import JSON with unknown keys or fields, listing what was\n"
    "                     ignored (by default they refuse the file: a typo loses data)\n"
    "  --timezone ZONE    the zone of times written without one (\"2026-12-01 10:00:00\"):\n"
    "                     a tz name (Europe/London) or an offset (+01:00); default UTC\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status: 0 imported (warnings allowed), 2 a file is missing or refused\n"
    "(nothing of it written).\n";

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static bool valid_kind(const char *k)
{
    return strcmp(k, "sites") == 0 || strcmp(k, "task_servers") == 0 ||
           strcmp(k, "clients") == 0 || strcmp(k, "connection_errors") == 0;
}

/* "3 sites, 12 task servers, ..." for what a JSON document holds. */
static void describe_json(const char *text, size_t len, char *dst, size_t dstlen)
{
    static const char *const keys[] = {"sites", "task_servers", "clients",
                                       "connection_errors"};
    static const char *const names[] = {"sites", "task servers", "clients",
                                        "connection errors"};
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    size_t off = 0;
    dst[0] = '\0';
    for (size_t i = 0; doc && i < 4 && off < dstlen; i++) {
        json_t *arr = json_object_get(doc, keys[i]);
        size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
        int w = snprintf(dst + off, dstlen - off, "%s%zu %.*s", i ? ", " : "", n,
                         (int)strlen(names[i]) - (n == 1), names[i]);
        if (w < 0)
            break;
        off += (size_t)w;
    }
    json_decref(doc);
}

/* The engine's notes, one per line, on stderr: "tsl import: warning: ...". */
static void print_notes(const struct cli_global *g, const tsl_buf *notes)
{
    const char *p = notes->ptr, *end = notes->ptr + notes->len;

    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        fprintf(stderr, "%s %s: %.*s\n", g->prog, g->cmd, (int)n, p);
        p += n + 1;
    }
}

/* After a refusal for an unknown key or field: how to import anyway. */
static void hint_unknown(const struct cli_global *g, int rc, const tsl_import_options *opt)
{
    if (rc == CLI_USAGE && !opt->ignore_unknown && strstr(tsl_error_last(), ": unknown "))
        fprintf(stderr, "%s %s: fix the name, or import with --ignore-unknown to skip what "
                        "tsl does not know (docs/inventory.md lists every field)\n",
                g->prog, g->cmd);
}

int cmd_import(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"csv", required_argument, NULL, 'c'},
        {"kind", required_argument, NULL, 'k'},
        {"ignore-unknown", no_argument, NULL, 'u'},
        {"timezone", required_argument, NULL, 'z'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char **csv = NULL, **kinds = NULL, **json = NULL;
    size_t ncsv = 0, njson = 0;
    const char *kind = NULL;
    tsl_store *st = NULL;
    tsl_snapshot *snap = NULL;
    char *text = NULL;
    tsl_buf notes = TSL_BUF_INIT;
    tsl_import_options opt = {false, NULL, &notes};
    int c, rc = CLI_OK;

    /* At most argc files of each kind. */
    csv = calloc((size_t)argc + 1, sizeof *csv);
    kinds = calloc((size_t)argc + 1, sizeof *kinds);
    json = calloc((size_t)argc + 1, sizeof *json);
    if (!csv || !kinds || !json) {
        rc = cli_error(g, CLI_FAIL, "out of memory");
        goto done;
    }

    cli_getopt_reset();
    /* '-': files come back in order (c == 1), so --kind binds the next one. */
    while ((c = getopt_long(argc, argv, "-:h", opts, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            goto done;
        case 'k':
            if (!valid_kind(optarg)) {
                rc = cli_usage_error(g, "--kind \"%s\" is not one of sites, task_servers, "
                                        "clients, connection_errors", optarg);
                goto done;
            }
            kind = optarg;
            break;
        case 'u':
            opt.ignore_unknown = true;
            break;
        case 'z':
            if (!optarg[0]) {
                rc = cli_usage_error(g, "--timezone needs a zone (Europe/London) or an "
                                        "offset (+01:00)");
                goto done;
            }
            opt.timezone = optarg;
            break;
        case 'c':
        case 1:
            if (c == 'c' || ends_with(optarg, ".csv") || kind) {
                csv[ncsv] = optarg;
                kinds[ncsv++] = kind;
                kind = NULL;
            } else if (ends_with(optarg, ".json")) {
                json[njson++] = optarg;
            } else {
                rc = cli_usage_error(g, "cannot tell what %s holds: name it .json or .csv, "
                                        "or give --kind KIND before it", optarg);
                goto done;
            }
            break;
        default:
            rc = cli_getopt_error(g, c, argv);
            goto done;
        }
    }
    if (kind) {
        rc = cli_usage_error(g, "--kind %s is not followed by a CSV file", kind);
        goto done;
    }
    if (ncsv + njson == 0) {
        rc = cli_usage_error(g, "give at least one file to import");
        goto done;
    }
    if ((rc = cli_require_db(g)) != CLI_OK)
        goto done;

    if ((rc = tsl_store_open(&st, g->db, 0)) < 0) {
        rc = cli_store_open_error(g, rc);
        goto done;
    }
    for (size_t i = 0; i < njson; i++) {
        size_t len;
        char what[160];
        if ((rc = cli_read_file(g, json[i], &text, &len)) != CLI_OK)
            goto done;
        tsl_buf_clear(&notes);
        if ((rc = tsl_store_import_json_opt(st, text, len, json[i], &opt)) < 0) {
            rc = cli_engine_error(g, rc, "refused, nothing of %s imported", json[i]);
            hint_unknown(g, rc, &opt);
            goto done;
        }
        print_notes(g, &notes);
        describe_json(text, len, what, sizeof what);
        printf("imported %s: %s\n", json[i], what);
        free(text);
        text = NULL;
    }
    if (ncsv > 0) {
        tsl_buf_clear(&notes);
        if ((rc = tsl_store_import_csv_opt(st, csv, kinds, ncsv, &opt)) < 0) {
            rc = ncsv == 1 ? cli_engine_error(g, rc, "refused, nothing of %s imported", csv[0])
                           : cli_engine_error(g, rc, "refused, none of the %zu CSV files "
                                                     "imported", ncsv);
            goto done;
        }
        print_notes(g, &notes);
        for (size_t i = 0; i < ncsv; i++)
            printf("imported %s%s%s\n", csv[i], kinds[i] ? " as " : "",
                   kinds[i] ? kinds[i] : "");
    }
    /* What the store holds now, read back the way decisions will see it. */
    if ((rc = tsl_snapshot_load(&snap, st, NULL)) < 0) {
        rc = cli_engine_error(g, rc, "imported, but cannot read the inventory back");
        goto done;
    }
    size_t ns = tsl_snapshot_site_count(snap), nv = tsl_snapshot_server_count(snap),
           nc = tsl_snapshot_client_count(snap);
    printf("%s now holds %zu site%s, %zu task server%s, %zu client%s\n", g->db, ns,
           ns == 1 ? "" : "s", nv, nv == 1 ? "" : "s", nc, nc == 1 ? "" : "s");
    rc = fflush(stdout) == 0 ? CLI_OK : cli_error(g, CLI_FAIL, "cannot write output");
done:
    tsl_buf_free(&notes);
    tsl_snapshot_free(snap);
    tsl_store_free(st);
    free(text);
    free(csv);
    free(kinds);
    free(json);
    return rc;
}
