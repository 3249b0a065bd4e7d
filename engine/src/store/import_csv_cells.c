/*
 * import_csv_cells.c - cells of an ITMS export to JSON values: integers
 * with thousands separators, reals, booleans, lists split on separators;
 * and the ITMS columns that fold into another field (a site's subnet mask,
 * a server's DNS suffix).
 *
 * Used by: import_csv.c.  Needs: import_csv.h, store.h (tsl_parse_count),
 * text.h (UTF-8).
 */
#include "import_csv.h"
#include "store.h"
#include "suggest.h"
#include "text.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------
 * Cells to JSON
 * ---------------------------------------------------------------------- */

char *csv_trim(char *s)
{
    char *e;

    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

bool csv_valid_utf8(const unsigned char *s)
{
    return tsl_utf8_valid((const char *)s, strlen((const char *)s));
}

static json_t *int_or_text(const char *s)
{
    const char *p = s;
    long long v;
    int64_t count;
    char *end;

    if (strchr(s, ',') && tsl_parse_count(s, &count))
        return json_integer((json_int_t)count);
    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return json_string(s);
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end)
        return json_string(s);
    return json_integer((json_int_t)v);
}

static json_t *real_or_text(const char *s)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v))
        return json_string(s);
    return json_real(v);
}

static json_t *bool_or_text(const char *s)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1"))
        return json_true();
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcmp(s, "0"))
        return json_false();
    return json_string(s);
}

static json_t *split(char *s, const char *seps)
{
    json_t *arr = json_array();
    char *tok, *save = NULL;

    if (!arr)
        return NULL;
    for (tok = strtok_r(s, seps, &save); tok; tok = strtok_r(NULL, seps, &save)) {
        tok = csv_trim(tok);
        if (*tok && json_array_append_new(arr, json_string(tok)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

json_t *csv_cell_value(char *s, col_type type)
{
    switch (type) {
    case COL_INT:
        return int_or_text(s);
    case COL_REAL:
        return real_or_text(s);
    case COL_BOOL:
        return bool_or_text(s);
    case COL_TIME: {
        const char *p = s;
        while (isdigit((unsigned char)*p))
            p++;
        return *p ? json_string(s) : int_or_text(s);
    }
    case COL_CIDRS:
        return split(s, "; ,\t");
    case COL_NAMES:
        return split(s, ";");
    case COL_MASK:
    case COL_SUFFIX:
    case COL_TEXT:
    default:
        return json_string(s);
    }
}

/* "255.255.240.0", "20" or "/20" -> 20 (IPv4 bits); -1 when not a mask,
 * -2 when dotted but not contiguous. */
static int mask_bits(const char *m)
{
    unsigned a, b, c, d;
    char tail;
    uint32_t v;
    int bits = 0;

    if (*m == '/')
        m++;
    if (strchr(m, '.') == NULL) {
        int64_t n;
        if (!tsl_parse_count(m, &n) || strchr(m, ',') || n > 32)
            return -1;
        return (int)n;
    }
    if (sscanf(m, "%3u.%3u.%3u.%3u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
        c > 255 || d > 255)
        return -1;
    v = a << 24 | b << 16 | c << 8 | d;
    while (bits < 32 && (v & (UINT32_C(1) << (31 - bits))))
        bits++;
    if (bits < 32 && (v << bits) != 0)
        return -2;
    return bits;
}

/* Sites: a "Subnet" address plus a "Subnet Mask" becomes "a.b.c.d/n". */
int csv_apply_mask(json_t *row, const char *loc)
{
    json_t *mask = json_object_get(row, "subnet_mask"), *subnets = json_object_get(row, "subnets");
    const char *m = json_string_value(mask), *net;
    char cidr[96];
    const char *slash;
    int bits;

    if (!mask) {
        for (size_t i = 0; i < json_array_size(subnets); i++) {
            net = json_string_value(json_array_get(subnets, i));
            if (net && !strchr(net, '/'))
                return tsl_seterr(TSL_EINVALID,
                                  "%s: field \"Subnet\": \"%.60s\" has no prefix length: write "
                                  "it as %.60s/16, or add a \"Subnet Mask\" column",
                                  loc, net, net);
        }
        return 0;
    }
    if (json_array_size(subnets) != 1)
        return tsl_seterr(TSL_EINVALID,
                          "%s: field \"Subnet Mask\": give exactly one subnet in the row's "
                          "\"Subnet\" cell (got %zu)",
                          loc, json_array_size(subnets));
    bits = mask_bits(m);
    if (bits == -2)
        return tsl_seterr(TSL_EINVALID,
                          "%s: field \"Subnet Mask\": \"%.60s\" is not contiguous (its one bits "
                          "must all come first, as in 255.255.240.0)",
                          loc, m);
    if (bits < 0)
        return tsl_seterr(TSL_EINVALID,
                          "%s: field \"Subnet Mask\": \"%.60s\" is not a mask like "
                          "255.255.0.0 or a prefix length like 16",
                          loc, m);
    net = json_string_value(json_array_get(subnets, 0));
    if ((slash = strchr(net, '/')) != NULL) {
        if (atoi(slash + 1) != bits || !slash[1])
            return tsl_seterr(TSL_EINVALID,
                              "%s: field \"Subnet Mask\": %s says /%d but the subnet is "
                              "written %.60s",
                              loc, m, bits, net);
        snprintf(cidr, sizeof cidr, "%.60s", net);
    } else {
        snprintf(cidr, sizeof cidr, "%.60s/%d", net, bits);
    }
    if (json_array_set_new(subnets, 0, json_string(cidr)) < 0 ||
        json_object_del(row, "subnet_mask") < 0)
        return tsl_oom();
    return 0;
}

/* Task servers: a bare host name (or, without one, the server's name)
 * plus the primary DNS suffix becomes the host's FQDN. */
int csv_apply_suffix(json_t *row)
{
    const char *suffix = json_string_value(json_object_get(row, "dns_suffix"));
    const char *host = json_string_value(json_object_get(row, "host"));
    char fqdn[600];

    if (!suffix)
        return 0;
    if (!host)
        host = json_string_value(json_object_get(row, "name"));
    while (*suffix == '.')
        suffix++;
    if (host && *suffix && !strchr(host, '.')) {
        snprintf(fqdn, sizeof fqdn, "%.255s.%.255s", host, suffix);
        if (json_object_set_new(row, "host", json_string(fqdn)) < 0)
            return tsl_oom();
    }
    return json_object_del(row, "dns_suffix") < 0 ? tsl_oom() : 0;
}
