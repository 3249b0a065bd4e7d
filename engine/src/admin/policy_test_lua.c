/*
 * policy_test_lua.c - reading a policy test file's tables without running
 * anything of it (raw access, no metamethods): fields as text, integers,
 * booleans and lists, and unknown keys refused with the test's name.
 *
 * Used by: policy_test.c (inventory tables), policy_test_case.c (test
 * tables).  Needs: policy_test.h, lauxlib.
 */
#include "decide.h"
#include "policy.h"
#include "policy_test.h"
#include "store.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Raw table access (no metamethods: nothing of the file runs from here)
 * ---------------------------------------------------------------------- */

int ptest_rawfield(lua_State *L, int idx, const char *k)
{
    idx = lua_absindex(L, idx);
    lua_pushstring(L, k);
    return lua_rawget(L, idx);
}

/* Field as a string (NULL if absent); errors on another type. */
const char *ptest_str_field(lua_State *L, int idx, const char *k, const char *what)
{
    int t = ptest_rawfield(L, idx, k);
    const char *s = NULL;
    if (t == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: field \"%s\" must be a string", what, k);
    lua_pop(L, 1); /* the string stays alive: the table holds it */
    return s;
}

bool ptest_int_field(lua_State *L, int idx, const char *k, const char *what, int64_t *out)
{
    int t = ptest_rawfield(L, idx, k), isint = 0;
    bool has = false;
    if (t == LUA_TNUMBER) {
        *out = (int64_t)lua_tointegerx(L, -1, &isint);
        if (!isint)
            luaL_error(L, "%s: field \"%s\" must be a whole number", what, k);
        has = true;
    } else if (t != LUA_TNIL) {
        luaL_error(L, "%s: field \"%s\" must be a whole number", what, k);
    }
    lua_pop(L, 1);
    return has;
}

int ptest_bool_field(lua_State *L, int idx, const char *k, const char *what)
{
    int t = ptest_rawfield(L, idx, k), v = -1;
    if (t == LUA_TBOOLEAN)
        v = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: field \"%s\" must be true or false", what, k);
    lua_pop(L, 1);
    return v;
}

void ptest_check_keys(lua_State *L, int idx, const char *const *allowed, const char *what)
{
    idx = lua_absindex(L, idx);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: unexpected positional value", what);
        const char *k = lua_tostring(L, -1);
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, k) == 0;
        if (!ok)
            luaL_error(L, "%s: unknown field \"%s\"", what, k);
    }
}

/* A list of strings at the field; pushes nothing; n = -1 when absent. */
lua_Integer ptest_list_len(lua_State *L, int idx, const char *k, const char *what)
{
    int t = ptest_rawfield(L, idx, k);
    lua_Integer n = -1;
    if (t == LUA_TTABLE)
        n = (lua_Integer)lua_rawlen(L, -1);
    else if (t != LUA_TNIL)
        luaL_error(L, "%s: field \"%s\" must be a list", what, k);
    lua_pop(L, 1);
    return n;
}

const char *ptest_list_str(lua_State *L, int idx, const char *k, lua_Integer i, const char *what)
{
    ptest_rawfield(L, idx, k);
    lua_rawgeti(L, -1, i);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s[%d] must be a string", what, k, (int)i);
    const char *s = lua_tostring(L, -1);
    lua_pop(L, 2);
    return s;
}

