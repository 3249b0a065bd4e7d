/*
 * error.c - the error table, tsl_strerror() and the thread-local detail
 * message behind tsl_error_last().
 *
 * The message buffer is the engine's one piece of per-thread state: it is
 * what lets every function return a plain int and still say what went wrong.
 */
#include "common.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[1024];

const char *tsl_strerror(int code)
{
    switch (code) {
#define TSL_ERROR_TEXT_(name, value, text) case value: return text;
        TSL_ERROR_LIST(TSL_ERROR_TEXT_)
#undef TSL_ERROR_TEXT_
    }
    return "unknown error";
}

const char *tsl_error_name(int code)
{
    switch (code) {
#define TSL_ERROR_NAME_(name, value, text) case value: return #name;
        TSL_ERROR_LIST(TSL_ERROR_NAME_)
#undef TSL_ERROR_NAME_
    }
    return "TSL_EUNKNOWN";
}

const char *tsl_error_last(void)
{
    return last_message;
}

void tsl_error_clear(void)
{
    last_message[0] = '\0';
}

int tsl_seterr(int code, const char *fmt, ...)
{
    /* formatted aside first: callers often wrap tsl_error_last() itself */
    char msg[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_message, msg, sizeof msg);
    return code;
}

int tsl_oom(void)
{
    return tsl_seterr(TSL_ENOMEM, "out of memory");
}
