/*
 * settings.c - the tunables of the default logic and their defaults, which
 * are the values ITMS itself uses.
 */
#include "common.h"

#include <string.h>
#include <strings.h>

void tsl_settings_init(tsl_settings *s)
{
    s->stale_after = 180;
    s->error_window = 3600;
    s->max = 10;
    s->ttl = 3600;
    s->selection = TSL_SELECT_CAPACITY;
    s->heard_since = 0;
}

static const char *const selection_names[] = {"capacity", "responsiveness", "connections"};

int tsl_selection_parse(tsl_selection *out, const char *text)
{
    for (size_t i = 0; i < sizeof selection_names / sizeof *selection_names; i++) {
        if (text && strcasecmp(text, selection_names[i]) == 0) {
            *out = (tsl_selection)i;
            return 0;
        }
    }
    return tsl_seterr(TSL_EINVALID,
                      "unknown selection \"%s\" (expected capacity, responsiveness or connections)",
                      text ? text : "");
}

const char *tsl_selection_name(tsl_selection sel)
{
    if ((unsigned)sel < sizeof selection_names / sizeof *selection_names)
        return selection_names[sel];
    return "unknown";
}
