/*
 * ip.c - parsing and formatting of IPv4/IPv6 addresses and CIDR prefixes.
 * IPv4 is stored IPv4-mapped (::ffff:a.b.c.d) so one 128-bit trie holds
 * both families; an IPv4 /n prefix becomes /96+n.
 */
#include "common.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static bool parse_any(tsl_ip *out, const char *text, bool *is_v4)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, text, &a4) == 1) {
        memcpy(out->b, v4_mapped, 12);
        memcpy(out->b + 12, &a4, 4);
        *is_v4 = true;
        return true;
    }
    if (inet_pton(AF_INET6, text, &a6) == 1) {
        memcpy(out->b, &a6, 16);
        *is_v4 = false;
        return true;
    }
    return false;
}

int tsl_ip_parse(tsl_ip *out, const char *text)
{
    bool v4;
    if (!text || !*text)
        return tsl_seterr(TSL_EINVALID, "empty IP address");
    if (strlen(text) >= INET6_ADDRSTRLEN || !parse_any(out, text, &v4))
        return tsl_seterr(TSL_EINVALID, "\"%.64s\" is not a valid IPv4 or IPv6 address", text);
    return 0;
}

int tsl_cidr_parse(tsl_ip *out, int *out_bits, const char *text)
{
    char addr[INET6_ADDRSTRLEN + 1];
    bool v4;
    const char *slash = text ? strchr(text, '/') : NULL;
    size_t alen = slash ? (size_t)(slash - text) : 0;

    if (!slash || alen == 0 || alen >= sizeof addr)
        return tsl_seterr(TSL_EINVALID, "\"%.64s\" is not a valid CIDR (expected ADDRESS/BITS)",
                          text ? text : "");
    memcpy(addr, text, alen);
    addr[alen] = '\0';
    if (!parse_any(out, addr, &v4))
        return tsl_seterr(TSL_EINVALID, "\"%.64s\" is not a valid CIDR: bad address \"%s\"", text,
                          addr);

    char *end;
    const char *digits = slash + 1;
    if (*digits < '0' || *digits > '9')
        return tsl_seterr(TSL_EINVALID, "\"%.64s\" is not a valid CIDR: bad prefix length", text);
    long bits = strtol(digits, &end, 10);
    int maxbits = v4 ? 32 : 128;
    if (*end || bits < 0 || bits > maxbits || end - digits > 3)
        return tsl_seterr(TSL_EINVALID,
                          "\"%.64s\" is not a valid CIDR: prefix length must be 0..%d", text,
                          maxbits);
    int total = (int)bits + (v4 ? 96 : 0);
    for (int i = total; i < 128; i++) {
        if (out->b[i / 8] & (0x80 >> (i % 8)))
            return tsl_seterr(TSL_EINVALID,
                              "\"%.64s\" is not a valid CIDR: host bits are set past /%ld", text,
                              bits);
    }
    *out_bits = total;
    return 0;
}

void tsl_ip_format(char *dst, size_t dstlen, const tsl_ip *ip)
{
    if (memcmp(ip->b, v4_mapped, 12) == 0)
        inet_ntop(AF_INET, ip->b + 12, dst, (socklen_t)dstlen);
    else
        inet_ntop(AF_INET6, ip->b, dst, (socklen_t)dstlen);
}
