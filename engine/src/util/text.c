/*
 * text.c - names and strings safe wherever they end up (text.h): UTF-8
 * well-formedness, control characters, length, and site lists without
 * duplicates.
 *
 * Used by: the broker's routes and admin API, import.  Needs: text.h.
 */
#include "text.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

size_t tsl_text_utf8_seq(const char *s, size_t avail)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = avail ? p[0] : 0;
    size_t n;
    unsigned min, cp;
    if (!avail)
        return 0;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 1, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 2, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 3, min = 0x10000, cp = c & 0x07;
    else
        return 0; /* a continuation byte, C0/C1 (overlong) or F5..FF */
    if (avail <= n)
        return 0;
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

bool tsl_utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0, n; i < len; i += n)
        if (!(n = tsl_text_utf8_seq(s + i, len - i)))
            return false;
    return true;
}

const char *tsl_text_name_problem(const char *s, size_t max)
{
    size_t len = s ? strlen(s) : 0;
    if (!len)
        return "is empty";
    if (len > max)
        return "is too long";
    if (!tsl_utf8_valid(s, len))
        return "is not valid UTF-8";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return "contains a control character";
        if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) /* U+0080..U+009F */
            return "contains a control character";
    }
    return NULL;
}

int tsl_text_site_list(const char *field, const char *const *names, size_t n, size_t max)
{
    for (size_t i = 0; i < n; i++) {
        const char *why = tsl_text_name_problem(names[i], max);
        if (why)
            return tsl_seterr(TSL_EINVALID, "%s[%zu] %s (a site name is 1 to %zu bytes of "
                                            "UTF-8 text)",
                              field, i, why, max);
        for (size_t k = 0; k < i; k++)
            if (strcasecmp(names[k], names[i]) == 0)
                return tsl_seterr(TSL_EINVALID, "%s[%zu] \"%.80s\" is listed twice (as %s[%zu])",
                                  field, i, names[i], field, k);
    }
    return 0;
}
