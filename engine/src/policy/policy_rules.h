/*
 * policy_rules.h - what the rule runner's files share: reaching the
 * evaluation from a Lua call, the entry objects, and the list object's
 * metatable (policy_list.c).
 *
 * Used by: policy_rules.c, policy_list.c.  Needs: policy.h, lua.
 */
#ifndef TSL_POLICY_RULES_H
#define TSL_POLICY_RULES_H

#include "policy.h"

#include <lua.h>

#define ENTRY_MT "tsl.entry"
#define LIST_MT "tsl.list"

typedef struct entry_ud {
    uint32_t server;
    uint64_t serial;
} entry_ud;

/* The evaluation the calling rule runs in. */
TSL_INTERNAL pol_eval *rules_eval_of(lua_State *L);

/* The evaluation for a method that changes the list: refused while a
 * callback of another method runs (that method holds pointers into the
 * list and the scratch space). */
TSL_INTERNAL pol_eval *rules_changing_eval(lua_State *L, const char *method);

/* Calls the function below nargs arguments (one result) as a callback of
 * `what`: changing methods are refused until it returns.  Protected, so an
 * error in the callback clears the mark before it propagates. */
TSL_INTERNAL void rules_call_callback(lua_State *L, pol_eval *ev, int nargs, const char *what);

/* The latch: while fallback is blocked, only tier 0 stays. */
TSL_INTERNAL void rules_enforce_block(pol_eval *ev);

/* __newindex of the read-only objects; the upvalue names the object. */
TSL_INTERNAL int rules_read_only(lua_State *L);

TSL_INTERNAL int rules_find_pos(const policy_wstate *ws, uint32_t server);

TSL_INTERNAL void rules_push_entry(lua_State *L, pol_eval *ev, uint32_t server);

TSL_INTERNAL uint32_t rules_check_entry(lua_State *L, int idx, pol_eval *ev);

/* Pushes the metatable of list objects (methods, length, pairs, read-only),
 * created on first use (policy_list.c). */
TSL_INTERNAL void policy_list_push_meta(lua_State *L);

#endif
