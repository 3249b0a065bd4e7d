/*
 * sandbox.h - a Lua state that is safe to hand admin-written policy code.
 *
 * What a sandbox guarantees:
 *   - memory: every byte goes through our allocator, which counts it and
 *     refuses growth past a ceiling (and, for tests, fails the Nth growth);
 *   - libraries by allow-list: base (without load, loadfile, dofile,
 *     collectgarbage, print, warn, rawset, _G), string (without dump, pattern
 *     functions bounded), table, math (without random/randomseed), utf8.
 *     No io, os, package/require, debug, coroutine;
 *   - text only: chunks are loaded with mode "t", bytecode is refused;
 *   - a frozen base: the library tables are read-only proxies shared by every
 *     chunk; each chunk gets its own environment that falls through to the
 *     base and raises an error on any undeclared global, read or write;
 *   - time: a count hook charges an instruction budget per call and checks
 *     a monotonic deadline (sb->time_ms per call, and the thread's ambient
 *     deadline and cancel flag, sandbox_ambient_set), also on every
 *     allocation of 64 KiB or more (one instruction doing a lot of work,
 *     a `..` of long strings, is then stopped at the next); once a call is being
 *     killed the hook fires on every instruction, so a pcall inside the
 *     script cannot swallow the kill;
 *   - no long C calls: every library function whose work grows with its
 *     input is replaced by a bounded one that caps its input or result and
 *     charges its work to the same budget and clock (string.rep, the
 *     pattern functions, a plain find in linear time, table.sort, concat,
 *     move, unpack, insert, remove, and the rest of string and utf8 by the
 *     bytes they read);
 *   - no addresses: tostring and string.format("%s") print a table or a
 *     function by its type (or __name), never "0x55..."; "%p" is refused;
 *   - setmetatable refuses __gc (finalizers run with hooks off), and
 *     xpcall runs its handler after unwinding, as a plain call (Lua runs
 *     real message handlers with hooks off after a hook error).
 *
 * Every Lua API use in here happens inside a protected call, so an
 * allocation failure can never reach the panic handler.
 *
 * Used by: policy_compile.c (load-time run), policy_rules.c (per-worker
 * rule state), policy_test.c.  Needs: Lua 5.4 public API only.
 */
#ifndef TSL_SANDBOX_H
#define TSL_SANDBOX_H

#include "common.h"

#include <lua.h>

/* Instructions between two budget checks while not killing. */
#define SANDBOX_STEP 1000
/* Default ceilings (policy compile and each worker state). */
#define SANDBOX_MEMORY_DEFAULT ((size_t)32 << 20)
#define SANDBOX_LOAD_BUDGET_DEFAULT 10000000
/* Pattern functions (find, match, gmatch, gsub) refuse subjects longer than
 * this and patterns with more repetition items, which bounds Lua's
 * backtracking matcher (it runs in C, out of reach of the count hook). */
#define SANDBOX_PATTERN_SUBJECT_MAX 256
#define SANDBOX_PATTERN_REPEAT_MAX 3
/* Work bounds of the C library functions (see sandbox.c). */
#define SANDBOX_STRING_MAX ((size_t)8 << 20)   /* string.rep's result */
#define SANDBOX_ITEMS_MAX ((int64_t)1 << 18)   /* concat, move, unpack ranges */
#define SANDBOX_SORT_MAX 20000                 /* table.sort without a Lua comparator */
#define SANDBOX_PATTERN_COST_MAX ((double)(1 << 26))
#define SANDBOX_BYTES_PER_STEP 16              /* bytes of C work charged as one instruction */
/* Wall-clock bound of a load (policy compile, a worker's rule state, a
 * test file): sandbox_new's default for time_ms. */
#define SANDBOX_LOAD_TIME_MS_DEFAULT 1000

/* Allocation failure injection, shared between a sandbox and the C code
 * around it (policy compile) so one counter numbers every allocation.
 * fail_at == 0: never fail.  persist: also fail every later one. */
typedef struct tsl_alloc_probe {
    uint64_t count;
    uint64_t fail_at;
    bool persist;
    bool fired;       /* at least one allocation was refused by the probe */
} tsl_alloc_probe;

/* true when the next allocation must fail (and counts it). */
TSL_INTERNAL bool alloc_probe_fail(tsl_alloc_probe *p);
/* malloc/realloc/calloc that consult the probe (p may be NULL). */
TSL_INTERNAL void *probe_malloc(tsl_alloc_probe *p, size_t n);
TSL_INTERNAL void *probe_realloc(tsl_alloc_probe *p, void *ptr, size_t n);
TSL_INTERNAL void *probe_calloc(tsl_alloc_probe *p, size_t n, size_t size);

typedef struct sandbox {
    lua_State *L;
    size_t used;          /* bytes currently allocated by Lua */
    size_t peak;
    size_t limit;         /* ceiling in bytes */
    tsl_alloc_probe *probe;
    bool refused_limit;   /* the ceiling refused an allocation (sticky until reset) */
    bool refused_other;   /* the probe or malloc refused one */
    /* budget of the current call */
    int64_t budget;
    int64_t left;
    bool killing;
    int64_t time_ms;      /* wall-clock bound of each call, 0 none (owner sets it) */
    uint64_t deadline_ns; /* of the current call (CLOCK_MONOTONIC), 0 none */
    int64_t charged;      /* work charged since the clock was last read */
    int stop;             /* why the current call is being killed (sandbox_stop) */
    const _Atomic bool *cancel; /* the ambient cancel flag when the call began */
    int base_ref;         /* registry: table of the frozen base entries */
    void *user;           /* the owner's pointer (policy_rules.c: its worker state) */
} sandbox;

/* Why a call was killed (sb->stop). */
enum sandbox_stop {
    SANDBOX_RUNNING = 0,
    SANDBOX_OUT_OF_BUDGET, /* instruction budget */
    SANDBOX_OUT_OF_TIME,   /* sb->time_ms or the ambient deadline */
    SANDBOX_CANCELLED      /* the ambient cancel flag */
};

/* The calling thread's ambient bound, applied to every sandbox call it
 * makes from now on on top of each sandbox's own: a cancel flag (NULL
 * none; `why` completes "stopped: ...") and a deadline (CLOCK_MONOTONIC
 * ns, 0 none; `what` completes "time limit of ... exceeded").  The broker
 * sets them on the thread that checks uploaded policies, so SIGTERM stops
 * a check at once and a check never runs past its own deadline. */
TSL_INTERNAL void sandbox_ambient_set(const _Atomic bool *cancel, const char *why,
                                      uint64_t deadline_ns, const char *what);
/* CLOCK_MONOTONIC in nanoseconds. */
TSL_INTERNAL uint64_t sandbox_now_ns(void);

/* Charges `cost` instructions of work done in C to the current call:
 * raises the kill error when the budget, the deadline or the cancel flag
 * says so (reads the clock once per SANDBOX_STEP charged). */
TSL_INTERNAL void sandbox_charge(lua_State *L, int64_t cost);

/* Creates a state with the allow-listed libraries and the frozen base.
 * `limit` 0 means SANDBOX_MEMORY_DEFAULT; `probe` may be NULL.
 * TSL_ENOMEM when memory runs out (limit or probe). */
TSL_INTERNAL int sandbox_new(sandbox **out, size_t limit, tsl_alloc_probe *probe);
TSL_INTERNAL void sandbox_free(sandbox *sb);

/* Pushes a new chunk environment: lookups hit `extras` (a table at stack
 * index extras_idx, 0 for none; its entries are copied), then the frozen
 * base; anything else is an error, as is every assignment.
 * Must run inside a protected call (it allocates). */
TSL_INTERNAL void sandbox_push_env(sandbox *sb, int extras_idx);

/* Loads a text chunk named `name` (shown as "name:LINE:" in messages) and
 * pushes it with its _ENV set to the table at env_idx.  Returns a Lua
 * status; on error the message is pushed instead.  Protected internally. */
TSL_INTERNAL int sandbox_load(sandbox *sb, const char *src, size_t len, const char *name,
                              int env_idx);

/* Calls the function below nargs arguments under a budget of `budget`
 * instructions (<= 0: unlimited) with a traceback message handler.
 * Returns a Lua status; on error the message (a string, first line
 * "file:line: what", then the traceback) is on the stack.
 * Must itself be called inside a protected call or with a stack that has
 * room: it only uses lua_pcall, which is safe anywhere. */
TSL_INTERNAL int sandbox_call(sandbox *sb, int nargs, int nresults, int64_t budget);

/* Starts/stops charging instructions to a budget without calling anything
 * (for callers that run several protected calls under one budget). */
TSL_INTERNAL void sandbox_budget_begin(sandbox *sb, int64_t budget);
TSL_INTERNAL void sandbox_budget_end(sandbox *sb);

/* Formats the error of a failed call: copies the message on top of the
 * stack (or a description of the status) into dst, first line only unless
 * `full`.  Pops nothing. */
TSL_INTERNAL void sandbox_errmsg(sandbox *sb, int status, char *dst, size_t dstlen, bool full);

/* Clears the sticky refusal flags before a new operation. */
TSL_INTERNAL void sandbox_reset_flags(sandbox *sb);

/* The message handler used by sandbox_call (exposed for nested pcalls made
 * by C helpers). */
TSL_INTERNAL int sandbox_msgh(lua_State *L);

/* luaL_error positioned at the nearest Lua function ("file:line: ..."). */
TSL_INTERNAL int sandbox_error(lua_State *L, const char *fmt, ...);

/* The sandbox of a state (stored in its extra space). */
TSL_INTERNAL sandbox *sandbox_of(lua_State *L);

#endif
