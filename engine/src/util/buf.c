/*
 * buf.c - the growable byte buffer the engine renders JSON, CSV and text
 * into.  Output is hand-written here, not built with jansson, because the
 * list response is on the hot path and must not allocate once the buffer is
 * warm; every parse of outside input goes through jansson.
 */
#include "common.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tsl_buf_clear(tsl_buf *b)
{
    b->len = 0;
    if (b->ptr)
        b->ptr[0] = '\0';
}

void tsl_buf_free(tsl_buf *b)
{
    if (!b)
        return;
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

int tsl_buf_grow(tsl_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2)
            return tsl_oom();
        cap *= 2;
    }
    char *p = realloc(b->ptr, cap);
    if (!p)
        return tsl_oom();
    b->ptr = p;
    b->cap = cap;
    return 0;
}

int tsl_buf_put(tsl_buf *b, const char *s, size_t n)
{
    int err = tsl_buf_grow(b, n);
    if (err < 0)
        return err;
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
    b->ptr[b->len] = '\0';
    return 0;
}

int tsl_buf_puts(tsl_buf *b, const char *s)
{
    return tsl_buf_put(b, s, strlen(s));
}

int tsl_buf_printf(tsl_buf *b, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return tsl_seterr(TSL_ERROR, "format error");
    if ((size_t)n < sizeof small)
        return tsl_buf_put(b, small, (size_t)n);

    int err = tsl_buf_grow(b, (size_t)n);
    if (err < 0)
        return err;
    va_start(ap, fmt);
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int tsl_buf_put_i64(tsl_buf *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    /* via the unsigned magnitude, so INT64_MIN is fine too */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return tsl_buf_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

int tsl_buf_json_str(tsl_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    if (!s)
        return tsl_buf_put(b, "null", 4);
    size_t n = strlen(s);
    /* worst case every byte becomes \u00XX */
    int err = tsl_buf_grow(b, n * 6 + 2);
    if (err < 0)
        return err;
    char *o = b->ptr + b->len;
    *o++ = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else if (c < 0x20) {
            memcpy(o, "\\u00", 4);
            o[4] = hex[c >> 4];
            o[5] = hex[c & 15];
            o += 6;
        } else if (c < 0x80) {
            *o++ = (char)c;
        } else {
            /* JSON is UTF-8: a byte that starts no well-formed sequence (a
             * message echoing bad input) becomes U+FFFD, never raw */
            size_t len = tsl_text_utf8_seq((const char *)p, n - (size_t)(p - (const unsigned char *)s));
            if (!len) {
                memcpy(o, "\\ufffd", 6);
                o += 6;
            } else {
                memcpy(o, p, len);
                o += len;
                p += len - 1;
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->ptr);
    b->ptr[b->len] = '\0';
    return 0;
}

int tsl_buf_csv_field(tsl_buf *b, const char *s)
{
    if (!s)
        return 0;
    /* a cell a spreadsheet would run as a formula (=, +, -, @, tab, CR
     * first) gets a leading single quote, as OWASP recommends: it shows
     * as text, and =HYPERLINK(...) in a server name stays a name */
    bool formula = strchr("=+-@\t\r", *s) && *s;
    if (!formula && !strpbrk(s, ",\"\r\n"))
        return tsl_buf_puts(b, s);
    int err = tsl_buf_put(b, "\"", 1);
    if (err == 0 && formula)
        err = tsl_buf_put(b, "'", 1);
    for (const char *p = s; err == 0 && *p; p++)
        err = *p == '"' ? tsl_buf_put(b, "\"\"", 2) : tsl_buf_put(b, p, 1);
    return err < 0 ? err : tsl_buf_put(b, "\"", 1);
}
