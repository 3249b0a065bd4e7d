/*
 * cmd_test.c - `tsl test DIR|FILE...`: runs admin-written policy tests
 * (small Lua files naming a policy, an inventory and cases; see
 * docs/policy-language.md) and prints TAP.  tsl_policy_test_file does the
 * work; this file finds the files and sets the exit status.
 *
 * Used by: main.c.  Needs: cli.h.
 */
#include "cli.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "usage: tsl test DIR|FILE.lua... [--policy FILE]\n"
    "\n"
    "Runs policy tests: every *.lua file of each DIR (in name order) and each FILE.\n"
    "A test file names the policy it tests, an inventory (a JSON file or a Lua\n"
    "table) and cases, each a request with the list it must get.  Prints TAP.\n"
    "\n"
    "  --policy FILE   test this policy instead of the one each file names\n"
    "  -h, --help      this help\n"
    "\n"
    "exit status: 0 every test passed, 1 some failed, 2 usage error, 3 failure.\n";

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends the *.lua files of dir, sorted, to *files. */
static int add_dir(const struct cli_global *g, const char *dir, char ***files, size_t *n,
                   size_t *cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t first = *n;
    int rc = CLI_OK;

    if (!d)
        return cli_error(g, CLI_USAGE, "cannot read %s: %s", dir, strerror(errno));
    /* cppcheck-suppress readdirCalled ; readdir_r is deprecated (glibc), and
     * this DIR is private to this call */
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".lua") != 0 || de->d_name[0] == '.')
            continue;
        if (*n == *cap) {
            size_t ncap = *cap ? *cap * 2 : 32;
            char **nf = realloc(*files, ncap * sizeof *nf);
            if (!nf) {
                rc = cli_error(g, CLI_FAIL, "out of memory");
                goto done;
            }
            *files = nf;
            *cap = ncap;
        }
        size_t plen = strlen(dir) + len + 2;
        if (!((*files)[*n] = malloc(plen))) {
            rc = cli_error(g, CLI_FAIL, "out of memory");
            goto done;
        }
        snprintf((*files)[*n], plen, "%s/%s", dir, de->d_name);
        (*n)++;
    }
    qsort(*files + first, *n - first, sizeof **files, cmp_str);
    if (*n == first)
        rc = cli_error(g, CLI_USAGE, "no *.lua test file in %s", dir);
done:
    closedir(d);
    return rc;
}

int cmd_test(const struct cli_global *g, int argc, char **argv)
{
    static const struct option opts[] = {
        {"policy", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *policy = NULL;
    char **files = NULL;
    size_t nfiles = 0, cap = 0;
    tsl_test_counts counts = {0, 0, 0};
    tsl_buf out = TSL_BUF_INIT;
    int c, rc = CLI_OK;

    cli_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            policy = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return CLI_OK;
        default:
            return cli_getopt_error(g, c, argv);
        }
    }
    if (optind >= argc)
        return cli_usage_error(g, "name a directory of test files (or test files)");
    for (int i = optind; i < argc && rc == CLI_OK; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            rc = cli_error(g, CLI_USAGE, "cannot open %s: %s", argv[i], strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = add_dir(g, argv[i], &files, &nfiles, &cap);
        } else {
            if (nfiles == cap) {
                size_t ncap = cap ? cap * 2 : 32;
                char **nf = realloc(files, ncap * sizeof *nf);
                if (!nf) {
                    rc = cli_error(g, CLI_FAIL, "out of memory");
                    break;
                }
                files = nf;
                cap = ncap;
            }
            if (!(files[nfiles] = strdup(argv[i])))
                rc = cli_error(g, CLI_FAIL, "out of memory");
            else
                nfiles++;
        }
    }
    if (rc != CLI_OK)
        goto done;

    printf("TAP version 13\n");
    for (size_t i = 0; i < nfiles; i++) {
        int err = tsl_policy_test_file(&out, &counts, files[i], policy);
        if (err < 0) {
            rc = cli_engine_error(g, err, "cannot run %s", files[i]);
            goto done;
        }
        if ((rc = cli_write_buf(g, &out)) != CLI_OK)
            goto done;
        tsl_buf_clear(&out);
    }
    printf("1..%d\n# %d passed, %d failed\n", counts.run, counts.passed, counts.failed);
    rc = counts.failed ? CLI_FINDINGS : CLI_OK;
done:
    tsl_buf_free(&out);
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    return rc;
}
