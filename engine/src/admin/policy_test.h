/*
 * policy_test.h - what the policy test runner's files share: the runner of
 * one test file, one test's arguments, and raw reading of the file's
 * tables (policy_test_lua.c).
 *
 * Used by: policy_test.c, policy_test_lua.c, policy_test_case.c.
 * Needs: decide.h, policy.h, lua.
 */
#ifndef TSL_POLICY_TEST_H
#define TSL_POLICY_TEST_H

#include "decide.h"
#include "policy.h"

#include <lua.h>

#define TEST_NOW_DEFAULT TSL_ESTATE_EPOCH

typedef struct runner {
    const char *path;        /* the test file */
    char dir[1024];          /* its directory, for relative names */
    char policy[1024];       /* declared policy path ("" none) */
    char inventory[1024];    /* declared JSON inventory path ("" none or table) */
    bool inventory_table;    /* the inventory is a table (registry: inv_ref) */
    int inv_ref, tests_ref;
    int64_t now;
    int ntests;
    char err[1024];          /* a problem with the file itself */
} runner;

struct case_args {
    runner *r;
    tsl_worker *w;
    tsl_result *res;
    const tsl_plan *plan;
    int index;               /* 1-based in the tests table */
    const char *name;
    tsl_buf *diag;           /* "#   ..." lines on failure */
    bool pass;
};

/* Records a failure of the test with one "#   ..." line. */
TSL_INTERNAL void ptest_diag(struct case_args *a, const char *fmt, ...) TSL_PRINTF(2, 3);
/* Runs one test (the case_args light userdata); protected
 * (policy_test_case.c). */
TSL_INTERNAL int ptest_case_p(lua_State *L);

TSL_INTERNAL int ptest_rawfield(lua_State *L, int idx, const char *k);

/* Field as a string (NULL if absent); errors on another type. */
TSL_INTERNAL const char *ptest_str_field(lua_State *L, int idx, const char *k, const char *what);

TSL_INTERNAL bool ptest_int_field(lua_State *L, int idx, const char *k, const char *what, int64_t *out);

TSL_INTERNAL int ptest_bool_field(lua_State *L, int idx, const char *k, const char *what);

TSL_INTERNAL void ptest_check_keys(lua_State *L, int idx, const char *const *allowed, const char *what);

/* A list of strings at the field; pushes nothing; n = -1 when absent. */
TSL_INTERNAL lua_Integer ptest_list_len(lua_State *L, int idx, const char *k, const char *what);

TSL_INTERNAL const char *ptest_list_str(lua_State *L, int idx, const char *k, lua_Integer i, const char *what);

#endif
