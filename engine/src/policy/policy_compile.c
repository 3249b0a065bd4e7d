/*
 * policy_compile.c - from a policy script to a compiled tsl_policy.
 *
 * The script runs once, in a fresh sandbox, under the memory ceiling and
 * the load-time instruction budget.  Its only effect is the calls it makes
 * to the four policy functions:
 *
 *   defaults { field = value, ... }
 *   site "London" { order = {...}, allow = {...}, deny = {...}, fallback = ... }
 *   group "Finance" { allow = {...}, order = {...}, deny = {...}, fallback = ... }
 *   rule("name", function(req, list) ... end)
 *
 * which validate their arguments (messages carry file:line) and fill the C
 * structures of policy.h.  Configuration is Lua, execution is C: nothing of
 * the Lua state survives the compile except the rule names; each worker
 * re-runs the text in its own state to get its own rule functions
 * (policy_load_rules).
 *
 * Also here: the policy arena, globs, and the public ref/free/version.
 */
#include "policy.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Arena
 * ---------------------------------------------------------------------- */

struct pol_chunk {
    struct pol_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *arena_alloc(pol_arena *a, size_t n)
{
    struct pol_chunk *c = a->head;
    size_t need = (n + 15) & ~(size_t)15;

    if (need < n)
        return NULL;
    if (!c || c->cap - c->used < need) {
        size_t cap = need > 4000 ? need : 4000;
        c = probe_malloc(a->probe, sizeof *c + cap);
        if (!c)
            return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(pol_arena *a, const char *s, size_t n)
{
    char *d = arena_alloc(a, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *arena_strdup(pol_arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

char *arena_printf(pol_arena *a, const char *fmt, ...)
{
    va_list ap;
    char small[256];
    int n;

    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    if ((size_t)n < sizeof small)
        return arena_strndup(a, small, (size_t)n);
    char *d = arena_alloc(a, (size_t)n + 1);
    if (!d)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return d;
}

void arena_free(pol_arena *a)
{
    struct pol_chunk *c = a->head;
    while (c) {
        struct pol_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ------------------------------------------------------------------------
 * Globs
 * ---------------------------------------------------------------------- */

bool policy_is_glob(const char *pat)
{
    return strpbrk(pat, "*?") != NULL;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

bool policy_glob_match(const char *p, const char *s)
{
    const char *star = NULL, *resume = NULL;

    while (*s) {
        if (*p == '*') {
            star = p++;
            resume = s;
        } else if (*p && (*p == '?' || lower((unsigned char)*p) == lower((unsigned char)*s))) {
            p++;
            s++;
        } else if (star) {
            p = star + 1;
            s = ++resume;
        } else {
            return false;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* ------------------------------------------------------------------------
 * The compile context, reached by the policy functions through an upvalue.
 * ---------------------------------------------------------------------- */

typedef enum { MODE_COMPILE, MODE_RULES } ctx_mode;

typedef struct compile_ctx {
    ctx_mode mode;
    tsl_policy *pol;          /* MODE_COMPILE: being filled */
    const tsl_policy *rules_of; /* MODE_RULES: names to match */
    uint32_t rules_seen;
    bool c_oom;               /* a C allocation failed (-> TSL_ENOMEM) */
    bool sealed;              /* the load is over: the functions refuse */
} compile_ctx;

static compile_ctx *ctx_of(lua_State *L)
{
    compile_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    if (c->sealed)
        luaL_error(L, "defaults, site, group and rule can only be called while the policy "
                      "loads, not from a rule");
    return c;
}

static int current_line(lua_State *L)
{
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar))
        return ar.currentline;
    return 0;
}

static int c_oom(lua_State *L, compile_ctx *c)
{
    c->c_oom = true;
    return luaL_error(L, "out of memory");
}

static const char *kind_name(pol_block_kind k)
{
    return k == POL_SITE    ? "site"
           : k == POL_GROUP ? "group"
           : k == POL_UNASSIGNED ? "unassigned"
                                 : "defaults";
}

/* "site \"London\": " or "defaults: " */
static const char *block_label(lua_State *L, const pol_block *b)
{
    if (b->kind == POL_DEFAULTS)
        return lua_pushliteral(L, "defaults: ");
    if (b->kind == POL_UNASSIGNED)
        return lua_pushliteral(L, "unassigned: ");
    return lua_pushfstring(L, "%s \"%s\": ", kind_name(b->kind), b->name);
}

/* ------------------------------------------------------------------------
 * Field parsers.  Each raises a Lua error naming the block and field.
 * ---------------------------------------------------------------------- */

/* A list of non-empty strings at idx into *out. */
static void parse_strv(lua_State *L, compile_ctx *c, const pol_block *b, int idx,
                       const char *field, const char *what, pol_strv *out)
{
    lua_Integer n;
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE)
        goto bad;
    n = (lua_Integer)lua_rawlen(L, idx);
    /* every key must be 1..n */
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_Integer k;
        int isint = 0;
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TNUMBER)
            goto bad;
        k = lua_tointegerx(L, -1, &isint);
        if (!isint || k < 1 || k > n)
            goto bad;
    }
    if (n > 100000)
        goto bad;
    out->n = (uint32_t)n;
    out->v = arena_alloc(&c->pol->arena, sizeof *out->v * (size_t)(n ? n : 1));
    if (!out->v)
        c_oom(L, c);
    for (lua_Integer i = 1; i <= n; i++) {
        size_t len;
        const char *s;
        if (lua_rawgeti(L, idx, i) != LUA_TSTRING)
            goto bad;
        s = lua_tolstring(L, -1, &len);
        if (len == 0 || strlen(s) != len)
            goto bad;
        out->v[i - 1] = arena_strndup(&c->pol->arena, s, len);
        if (!out->v[i - 1])
            c_oom(L, c);
        lua_pop(L, 1);
    }
    return;
bad:
    block_label(L, b);
    luaL_error(L, "%sfield \"%s\" must be a list of %s", lua_tostring(L, -1), field, what);
}

static lua_Integer parse_int(lua_State *L, const pol_block *b, int idx, const char *field,
                             lua_Integer lo, lua_Integer hi, const char *what)
{
    int isint = 0;
    lua_Integer v = 0;
    if (lua_type(L, idx) == LUA_TNUMBER)
        v = lua_tointegerx(L, idx, &isint);
    if (!isint || v < lo || v > hi) {
        block_label(L, b);
        luaL_error(L, "%sfield \"%s\" must be %s", lua_tostring(L, -1), field, what);
    }
    return v;
}

static void parse_fallback(lua_State *L, compile_ctx *c, pol_block *b, int idx)
{
    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) == LUA_TSTRING) {
        const char *s = lua_tostring(L, idx);
        if (strcmp(s, "default") == 0)
            b->fallback.kind = POL_FB_DEFAULT;
        else if (strcmp(s, "block") == 0)
            b->fallback.kind = POL_FB_BLOCK;
        else
            goto bad;
        return;
    }
    if (lua_type(L, idx) != LUA_TTABLE)
        goto bad;
    /* a list of site names and "*", plus an optional after = N */
    lua_pushliteral(L, "after");
    lua_rawget(L, idx);
    if (!lua_isnil(L, -1))
        b->fallback.after = (int)parse_int(L, b, -1, "fallback.after", 0, 30 * 86400,
                                           "a whole number of seconds (0 to 2592000)");
    lua_pop(L, 1);
    {
        /* copy the array part into a temporary table to reuse parse_strv */
        lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pop(L, 1);
            if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "after") == 0)
                continue;
            if (lua_type(L, -1) == LUA_TSTRING) {
                block_label(L, b);
                luaL_error(L, "%sunknown key \"%s\" in fallback (only site names, \"*\" "
                              "and after = SECONDS)",
                           lua_tostring(L, -1), lua_tostring(L, -2));
            }
        }
        lua_createtable(L, (int)(n > 0 && n < 1000 ? n : 0), 0);
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            if (lua_type(L, -2) == LUA_TSTRING) {
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
        parse_strv(L, c, b, -1, "fallback",
                   "site names (or \"*\"), or be \"default\" or \"block\"", &b->fallback.sites);
        lua_pop(L, 1);
        for (uint32_t i = 0; i < b->fallback.sites.n; i++)
            for (uint32_t j = 0; j < i; j++)
                if (strcasecmp(b->fallback.sites.v[i], b->fallback.sites.v[j]) == 0) {
                    block_label(L, b);
                    luaL_error(L, "%sfallback names \"%s\" twice", lua_tostring(L, -1),
                               b->fallback.sites.v[i]);
                }
        if (b->kind == POL_SITE)
            for (uint32_t i = 0; i < b->fallback.sites.n; i++)
                if (strcasecmp(b->fallback.sites.v[i], b->name) == 0) {
                    block_label(L, b);
                    luaL_error(L, "%sfallback names the site itself", lua_tostring(L, -1));
                }
        b->fallback.kind = POL_FB_LIST;
    }
    return;
bad:
    block_label(L, b);
    luaL_error(L, "%sfield \"fallback\" must be \"default\", \"block\" or a list of site "
                  "names (or \"*\")",
               lua_tostring(L, -1));
}

static const char *const site_fields[] = {"order", "allow", "deny", "fallback", "cap",
                                          "selection", "max", "ttl", "after", NULL};
static const char *const group_fields[] = {"order", "allow", "deny", "fallback", "exclusive",
                                           NULL};
static const char *const default_fields[] = {"selection", "fallback", "max", "ttl", "cap",
                                             "after", "on_error", "rule_budget",
                                             "rule_time_ms", NULL};

static bool field_allowed(const char *const *list, const char *k)
{
    for (; *list; list++)
        if (strcmp(*list, k) == 0)
            return true;
    return false;
}

static void parse_block(lua_State *L, compile_ctx *c, pol_block *b, int idx)
{
    const char *const *fields = b->kind == POL_SITE || b->kind == POL_UNASSIGNED ? site_fields
                                : b->kind == POL_GROUP                         ? group_fields
                                                                               : default_fields;
    tsl_policy *pol = c->pol;

    idx = lua_absindex(L, idx);
    if (lua_type(L, idx) != LUA_TTABLE) {
        block_label(L, b);
        luaL_error(L, "%sexpected a table of fields { ... }, got %s", lua_tostring(L, -1),
                   luaL_typename(L, idx));
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        const char *k;
        int v = lua_gettop(L);
        if (lua_type(L, -2) != LUA_TSTRING) {
            block_label(L, b);
            luaL_error(L, "%sunexpected positional value (fields are written name = value)",
                       lua_tostring(L, -1));
        }
        k = lua_tostring(L, -2);
        if (!field_allowed(fields, k)) {
            block_label(L, b);
            luaL_error(L, "%sunknown field \"%s\"", lua_tostring(L, -1), k);
        }
        if (strcmp(k, "order") == 0) {
            parse_strv(L, c, b, v, k, "server names", &b->order);
            for (uint32_t i = 0; i < b->order.n; i++)
                if (policy_is_glob(b->order.v[i])) {
                    block_label(L, b);
                    luaL_error(L, "%sfield \"order\" must be a list of server names (\"%s\" is a "
                                  "glob; globs belong in allow)",
                               lua_tostring(L, -1), b->order.v[i]);
                }
            b->has_order = true;
        } else if (strcmp(k, "allow") == 0) {
            parse_strv(L, c, b, v, k, "server names or globs", &b->allow);
            b->has_allow = true;
        } else if (strcmp(k, "deny") == 0) {
            parse_strv(L, c, b, v, k, "server names or globs", &b->deny);
            b->has_deny = true;
        } else if (strcmp(k, "fallback") == 0) {
            parse_fallback(L, c, b, v);
        } else if (strcmp(k, "cap") == 0) {
            b->cap = parse_int(L, b, v, k, 1, 100000000, "a positive whole number");
        } else if (strcmp(k, "max") == 0) {
            b->max = (int)parse_int(L, b, v, k, 1, 1000, "a whole number from 1 to 1000");
        } else if (strcmp(k, "ttl") == 0) {
            b->ttl = (int)parse_int(L, b, v, k, 0, 30 * 86400,
                                    "a whole number of seconds (0 to 2592000)");
        } else if (strcmp(k, "after") == 0) {
            b->after = (int)parse_int(L, b, v, k, 0, 30 * 86400,
                                      "a whole number of seconds (0 to 2592000)");
        } else if (strcmp(k, "rule_budget") == 0) {
            pol->rule_budget = parse_int(L, b, v, k, 1000, 100000000,
                                         "a whole number of instructions (1000 to 100000000)");
        } else if (strcmp(k, "rule_time_ms") == 0) {
            pol->rule_time_ms = parse_int(L, b, v, k, 1, 10000,
                                          "a whole number of milliseconds (1 to 10000)");
        } else if (strcmp(k, "selection") == 0) {
            tsl_selection sel;
            if (lua_type(L, v) != LUA_TSTRING || tsl_selection_parse(&sel, lua_tostring(L, v)) < 0) {
                tsl_error_clear();
                block_label(L, b);
                luaL_error(L, "%sfield \"selection\" must be \"capacity\", \"responsiveness\" "
                              "or \"connections\"",
                           lua_tostring(L, -1));
            }
            b->selection = (int)sel;
        } else if (strcmp(k, "exclusive") == 0) {
            if (lua_type(L, v) != LUA_TBOOLEAN) {
                block_label(L, b);
                luaL_error(L, "%sfield \"exclusive\" must be true or false", lua_tostring(L, -1));
            }
            b->exclusive = lua_toboolean(L, v);
        } else if (strcmp(k, "on_error") == 0) {
            const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tostring(L, v) : "";
            if (strcmp(s, "approved") == 0)
                pol->on_error = POL_ONERR_APPROVED;
            else if (strcmp(s, "default") == 0)
                pol->on_error = POL_ONERR_DEFAULT;
            else {
                block_label(L, b);
                luaL_error(L, "%sfield \"on_error\" must be \"approved\" or \"default\"",
                           lua_tostring(L, -1));
            }
        }
        lua_settop(L, v - 1);
    }
    b->has_body = true;
}

/* ------------------------------------------------------------------------
 * The policy functions
 * ---------------------------------------------------------------------- */

static void block_init(pol_block *b, pol_block_kind kind, const char *name, int line)
{
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->name = name;
    b->line = line;
    b->selection = -1;
    b->max = b->ttl = b->after = -1;
    b->fallback.after = -1;
}

static int f_defaults(lua_State *L)
{
    compile_ctx *c = ctx_of(L);
    if (c->mode == MODE_RULES)
        return 0;
    tsl_policy *pol = c->pol;
    if (pol->has_defaults)
        return luaL_error(L, "defaults: declared twice (first at line %d)", pol->defaults.line);
    block_init(&pol->defaults, POL_DEFAULTS, "defaults", current_line(L));
    pol->has_defaults = true;
    parse_block(L, c, &pol->defaults, 1);
    return 0;
}

/* unassigned { ... }: the block of clients with no site (no adapter in a
 * site subnet and no explicit site). */
static int f_unassigned(lua_State *L)
{
    compile_ctx *c = ctx_of(L);
    if (c->mode == MODE_RULES)
        return 0;
    tsl_policy *pol = c->pol;
    if (pol->has_unassigned)
        return luaL_error(L, "unassigned: declared twice (first at line %d)",
                          pol->unassigned.line);
    block_init(&pol->unassigned, POL_UNASSIGNED, "unassigned", current_line(L));
    pol->has_unassigned = true;
    parse_block(L, c, &pol->unassigned, 1);
    return 0;
}

static int f_block_body(lua_State *L)
{
    compile_ctx *c = ctx_of(L);
    pol_block_kind kind = (pol_block_kind)lua_tointeger(L, lua_upvalueindex(2));
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(3));
    if (c->mode == MODE_RULES)
        return 0;
    pol_block *b = kind == POL_SITE ? &c->pol->sites[i] : &c->pol->groups[i];
    if (b->has_body)
        return luaL_error(L, "%s \"%s\": body given twice", kind_name(kind), b->name);
    parse_block(L, c, b, 1);
    return 0;
}

static int f_block(lua_State *L, pol_block_kind kind)
{
    compile_ctx *c = ctx_of(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    luaL_argcheck(L, len > 0 && strlen(name) == len, 1, "name must be a non-empty string");
    if (kind == POL_SITE && strchr(name, '*'))
        return luaL_error(L, "site \"%s\": site names are not globs; defaults { ... } reaches "
                             "every site, unassigned { ... } the clients with no site",
                          name);
    if (c->mode == MODE_RULES) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_pushinteger(L, kind);
        lua_pushinteger(L, 0);
        lua_pushcclosure(L, f_block_body, 3);
        if (lua_gettop(L) >= 3 && lua_type(L, 2) == LUA_TTABLE)
            return 0;
        return 1;
    }

    tsl_policy *pol = c->pol;
    pol_block **arr = kind == POL_SITE ? &pol->sites : &pol->groups;
    uint32_t *n = kind == POL_SITE ? &pol->nsites : &pol->ngroups;
    uint32_t *cap = kind == POL_SITE ? &pol->capsites : &pol->capgroups;

    for (uint32_t i = 0; i < *n; i++)
        if (strcasecmp((*arr)[i].name, name) == 0)
            return luaL_error(L, "%s \"%s\": declared twice (first at line %d)", kind_name(kind),
                              name, (*arr)[i].line);
    if (*n >= 100000)
        return luaL_error(L, "too many %s blocks", kind_name(kind));
    if (*n == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 8;
        pol_block *na = probe_realloc(pol->arena.probe, *arr, sizeof *na * ncap);
        if (!na)
            return c_oom(L, c);
        *arr = na;
        *cap = ncap;
    }
    const char *dup = arena_strndup(&pol->arena, name, len);
    if (!dup)
        return c_oom(L, c);
    block_init(&(*arr)[*n], kind, dup, current_line(L));
    (*n)++;

    if (lua_type(L, 2) == LUA_TTABLE) { /* site("X", { ... }) */
        parse_block(L, c, &(*arr)[*n - 1], 2);
        return 0;
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushinteger(L, kind);
    lua_pushinteger(L, (lua_Integer)(*n - 1));
    lua_pushcclosure(L, f_block_body, 3);
    return 1;
}

static int f_site(lua_State *L)
{
    return f_block(L, POL_SITE);
}

static int f_group(lua_State *L)
{
    return f_block(L, POL_GROUP);
}

static int f_rule(lua_State *L)
{
    compile_ctx *c = ctx_of(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    lua_Debug ar;
    luaL_argcheck(L, len > 0 && strlen(name) == len, 1, "rule name must be a non-empty string");
    luaL_checktype(L, 2, LUA_TFUNCTION);
    luaL_argcheck(L, lua_gettop(L) == 2, 3, "rule takes a name and a function");

    if (c->mode == MODE_RULES) {
        const tsl_policy *pol = c->rules_of;
        for (uint32_t i = 0; i < pol->nrules; i++)
            if (strcmp(pol->rules[i].name, name) == 0) {
                /* the result table is the user value of the context */
                lua_getiuservalue(L, lua_upvalueindex(1), 1);
                lua_pushvalue(L, 2);
                lua_rawseti(L, -2, (lua_Integer)i + 1);
                lua_pop(L, 1);
                c->rules_seen++;
                return 0;
            }
        return luaL_error(L, "rule \"%s\" was not there when the policy was compiled", name);
    }

    tsl_policy *pol = c->pol;
    for (uint32_t i = 0; i < pol->nrules; i++)
        if (strcmp(pol->rules[i].name, name) == 0)
            return luaL_error(L, "rule \"%s\": declared twice (first at line %d)", name,
                              pol->rules[i].line);
    if (pol->nrules >= 10000)
        return luaL_error(L, "too many rules");
    if (pol->nrules == pol->caprules) {
        uint32_t ncap = pol->caprules ? pol->caprules * 2 : 8;
        pol_rule *na = probe_realloc(pol->arena.probe, pol->rules, sizeof *na * ncap);
        if (!na)
            return c_oom(L, c);
        pol->rules = na;
        pol->caprules = ncap;
    }
    pol_rule *r = &pol->rules[pol->nrules];
    r->name = arena_strndup(&pol->arena, name, len);
    if (!r->name)
        return c_oom(L, c);
    lua_pushvalue(L, 2);
    r->line = lua_getinfo(L, ">S", &ar) ? ar.linedefined : current_line(L);
    pol->nrules++;
    return 0;
}

/* Pushes the table of policy functions, bound to the context: a light
 * userdata (compile) or the full userdata at ud_idx (rules mode). */
static void push_dsl(lua_State *L, compile_ctx *c, int ud_idx)
{
    static const luaL_Reg fns[] = {
        {"defaults", f_defaults}, {"site", f_site},  {"group", f_group},
        {"rule", f_rule},         {"unassigned", f_unassigned}, {NULL, NULL},
    };
    if (ud_idx)
        ud_idx = lua_absindex(L, ud_idx);
    lua_createtable(L, 0, 5);
    if (ud_idx)
        lua_pushvalue(L, ud_idx);
    else
        lua_pushlightuserdata(L, c);
    luaL_setfuncs(L, fns, 1);
}

/* ------------------------------------------------------------------------
 * Running the chunk
 * ---------------------------------------------------------------------- */

struct run_args {
    sandbox *sb;
    compile_ctx *ctx;
    const char *src;
    size_t len;
    const char *name;
    int64_t budget;
    int status;       /* of the chunk */
    char msg[1024];   /* its error */
};

/* Protected: builds the env, loads, runs; records the chunk's own status
 * and message in args (so memory errors outside the chunk are told apart). */
static int run_p(lua_State *L)
{
    struct run_args *a = lua_touserdata(L, 1);
    int st;

    push_dsl(L, a->ctx, 0);
    sandbox_push_env(a->sb, -1);
    st = sandbox_load(a->sb, a->src, a->len, a->name, -1);
    if (st == LUA_OK)
        st = sandbox_call(a->sb, 0, 0, a->budget);
    a->status = st;
    if (st != LUA_OK)
        sandbox_errmsg(a->sb, st, a->msg, sizeof a->msg, false);
    return 0;
}

static int run_chunk(struct run_args *a)
{
    lua_State *L = a->sb->L;
    int st;
    lua_pushcfunction(L, run_p);
    lua_pushlightuserdata(L, a);
    st = lua_pcall(L, 1, 0, 0);
    if (st != LUA_OK) {
        a->status = st;
        sandbox_errmsg(a->sb, st, a->msg, sizeof a->msg, false);
        lua_pop(L, 1);
    }
    return a->status;
}

/* The error code of a failed run: TSL_ENOMEM when the machine (or the
 * test probe) ran out, TSL_EPOLICY when the script did something wrong,
 * including exceeding its own memory ceiling. */
static int run_error(struct run_args *a)
{
    if (a->ctx->c_oom || (a->status == LUA_ERRMEM && !a->sb->refused_limit))
        return tsl_seterr(TSL_ENOMEM, "%s: out of memory while loading the policy", a->name);
    if (a->status == LUA_ERRMEM)
        return tsl_seterr(TSL_EPOLICY, "%s: memory limit of %zu bytes exceeded while loading "
                                       "the policy",
                          a->name, a->sb->limit);
    /* Lua's own messages already start with "name:line:" */
    return tsl_seterr(TSL_EPOLICY, "%s", a->msg);
}

/* After the run: cross-block validation that needs the whole file. */
static int validate(tsl_policy *pol)
{
    for (uint32_t i = 0; i < pol->nsites; i++)
        if (!pol->sites[i].has_body)
            return tsl_seterr(TSL_EPOLICY, "%s:%d: site \"%s\" has no { ... } body", pol->name,
                              pol->sites[i].line, pol->sites[i].name);
    for (uint32_t i = 0; i < pol->ngroups; i++)
        if (!pol->groups[i].has_body)
            return tsl_seterr(TSL_EPOLICY, "%s:%d: group \"%s\" has no { ... } body", pol->name,
                              pol->groups[i].line, pol->groups[i].name);
    for (uint32_t i = 0; i < pol->nsites; i++) {
        const pol_block *b = &pol->sites[i];
        if (b->has_allow && b->allow.n == 0 && !b->has_order)
            return tsl_seterr(TSL_EPOLICY, "%s:%d: site \"%s\": field \"allow\" is empty (an "
                                           "empty approved set lists nothing)",
                              pol->name, b->line, b->name);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Public
 * ---------------------------------------------------------------------- */

int policy_compile_ex(tsl_policy **out, const char *src, size_t len, const char *name,
                      const policy_limits *lim)
{
    tsl_alloc_probe *probe = lim ? lim->probe : NULL;
    tsl_policy *pol = NULL;
    sandbox *sb = NULL;
    compile_ctx ctx;
    struct run_args *args = NULL;
    uint8_t digest[32];
    int err = 0;

    TSL_ARG(out);
    *out = NULL;
    TSL_ARG(src || len == 0);
    if (!name)
        name = "policy";
    if (!src)
        src = "";
    if (len > POL_MAX_SOURCE) {
        err = tsl_seterr(TSL_EPOLICY, "%s: policy is larger than %zu bytes", name,
                         POL_MAX_SOURCE);
        goto done;
    }

    pol = probe_calloc(probe, 1, sizeof *pol);
    if (!pol) {
        err = tsl_oom();
        goto done;
    }
    atomic_init(&pol->refs, 1);
    pol->arena.probe = probe;
    pol->on_error = POL_ONERR_APPROVED;
    pol->rule_budget = POL_RULE_BUDGET_DEFAULT;
    pol->rule_time_ms = POL_RULE_TIME_MS_DEFAULT;
    block_init(&pol->defaults, POL_DEFAULTS, "defaults", 0);
    block_init(&pol->unassigned, POL_UNASSIGNED, "unassigned", 0);
    pol->name = arena_strdup(&pol->arena, name);
    pol->src = arena_strndup(&pol->arena, src, len);
    if (!pol->name || !pol->src) {
        err = tsl_oom();
        goto done;
    }
    pol->len = len;
    policy_sha256(digest, src, len);
    policy_sha256_hex(pol->sha256, src, len);
    snprintf(pol->version, sizeof pol->version, "sha256:%.12s", pol->sha256);
    (void)digest;

    if ((err = sandbox_new(&sb, lim ? lim->memory : 0, probe)) < 0)
        goto done;
    if (lim && lim->load_time_ms > 0)
        sb->time_ms = lim->load_time_ms;

    memset(&ctx, 0, sizeof ctx);
    ctx.mode = MODE_COMPILE;
    ctx.pol = pol;
    args = probe_calloc(probe, 1, sizeof *args);
    if (!args) {
        err = tsl_oom();
        goto done;
    }
    args->sb = sb;
    args->ctx = &ctx;
    args->src = src;
    args->len = len;
    args->name = name;
    args->budget = lim && lim->load_budget ? lim->load_budget : SANDBOX_LOAD_BUDGET_DEFAULT;
    if (run_chunk(args) != LUA_OK || ctx.c_oom) {
        err = run_error(args);
        goto done;
    }
    if ((err = validate(pol)) < 0)
        goto done;

    pol->arena.probe = NULL; /* the probe belongs to this call only */
    *out = pol;
    pol = NULL;
done:
    free(args);
    sandbox_free(sb);
    tsl_policy_free(pol);
    return err;
}

int tsl_policy_compile(tsl_policy **out, const char *src, size_t len, const char *name)
{
    return policy_compile_ex(out, src, len, name, NULL);
}

tsl_policy *tsl_policy_ref(tsl_policy *pol)
{
    if (pol)
        atomic_fetch_add_explicit(&pol->refs, 1, memory_order_relaxed);
    return pol;
}

void tsl_policy_free(tsl_policy *pol)
{
    if (!pol)
        return;
    if (atomic_fetch_sub_explicit(&pol->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(pol->sites);
    free(pol->groups);
    free(pol->rules);
    arena_free(&pol->arena);
    free(pol);
}

const char *tsl_policy_version(const tsl_policy *pol)
{
    return pol ? pol->version : NULL;
}

/* ------------------------------------------------------------------------
 * Rule collection in a worker's state
 * ---------------------------------------------------------------------- */

struct rules_args {
    sandbox *sb;
    const tsl_policy *pol;
    int64_t budget;
    int status;
};

static int rules_p(lua_State *L)
{
    struct rules_args *a = lua_touserdata(L, 1);
    compile_ctx *ctx = lua_newuserdatauv(L, sizeof *ctx, 1); /* stays on the stack */
    int ud = lua_gettop(L);
    int st;

    memset(ctx, 0, sizeof *ctx);
    ctx->mode = MODE_RULES;
    ctx->rules_of = a->pol;
    lua_createtable(L, (int)a->pol->nrules, 0);
    lua_setiuservalue(L, ud, 1);
    push_dsl(L, ctx, ud);
    sandbox_push_env(a->sb, -1);
    st = sandbox_load(a->sb, a->pol->src, a->pol->len, a->pol->name, -1);
    if (st == LUA_OK)
        st = sandbox_call(a->sb, 0, 0, a->budget);
    if (st == LUA_OK && ctx->rules_seen != a->pol->nrules) {
        lua_pushfstring(L, "%s: the policy declared %d rules when compiled and %d now (rules "
                           "must not depend on anything that changes)",
                        a->pol->name, (int)a->pol->nrules, (int)ctx->rules_seen);
        st = LUA_ERRRUN;
    }
    a->status = st;
    ctx->sealed = true;
    if (st != LUA_OK)
        return 1;            /* the message */
    lua_getiuservalue(L, ud, 1);
    return 1;
}

int policy_load_rules(sandbox *sb, const tsl_policy *pol, int64_t budget)
{
    struct rules_args a = {sb, pol, budget, LUA_OK};
    int st;
    lua_pushcfunction(sb->L, rules_p);
    lua_pushlightuserdata(sb->L, &a);
    st = lua_pcall(sb->L, 1, 1, 0);
    if (st != LUA_OK)
        return st;
    return a.status;
}
