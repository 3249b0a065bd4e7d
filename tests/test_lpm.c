/*
 * test_lpm.c - the longest-prefix trie and address parsing, checked against
 * a brute-force scan over random prefixes of both address families.
 */
#include "harness.h"
#include "lpm.h"

static uint64_t rng = 0x1234567;
static uint64_t next_rand(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void mask(tsl_ip *ip, int bits)
{
    for (int i = bits; i < 128; i++)
        ip->b[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
}

static bool covers(const tsl_ip *p, int bits, const tsl_ip *a)
{
    for (int i = 0; i < bits; i++) {
        int x = (p->b[i / 8] >> (7 - i % 8)) & 1, y = (a->b[i / 8] >> (7 - i % 8)) & 1;
        if (x != y)
            return false;
    }
    return true;
}

TEST(ip__parses_both_families_and_refuses_garbage)
{
    tsl_ip ip;
    char buf[64];
    CHECK_OK(tsl_ip_parse(&ip, "10.1.2.3"));
    tsl_ip_format(buf, sizeof buf, &ip);
    CHECK_STR(buf, "10.1.2.3");
    CHECK_INT(ip.b[10], 0xff);
    CHECK_OK(tsl_ip_parse(&ip, "fd00:10::1"));
    tsl_ip_format(buf, sizeof buf, &ip);
    CHECK_STR(buf, "fd00:10::1");
    CHECK_INT(tsl_ip_parse(&ip, "10.1.2.300"), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "\"10.1.2.300\" is not a valid IPv4 or IPv6 address");
    CHECK_INT(tsl_ip_parse(&ip, ""), TSL_EINVALID);
    CHECK_INT(tsl_ip_parse(&ip, "fd00:::1"), TSL_EINVALID);
}

TEST(cidr__checks_length_and_host_bits)
{
    tsl_ip p;
    int bits;
    CHECK_OK(tsl_cidr_parse(&p, &bits, "10.10.0.0/16"));
    CHECK_INT(bits, 112);
    CHECK_OK(tsl_cidr_parse(&p, &bits, "fd00:10::/48"));
    CHECK_INT(bits, 48);
    CHECK_OK(tsl_cidr_parse(&p, &bits, "0.0.0.0/0"));
    CHECK_INT(bits, 96);
    CHECK_INT(tsl_cidr_parse(&p, &bits, "10.10.0.0/33"), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "prefix length must be 0..32");
    CHECK_INT(tsl_cidr_parse(&p, &bits, "10.10.1.0/16"), TSL_EINVALID);
    CHECK_CONTAINS(tsl_error_last(), "host bits are set");
    CHECK_INT(tsl_cidr_parse(&p, &bits, "10.10.0.0"), TSL_EINVALID);
    CHECK_INT(tsl_cidr_parse(&p, &bits, "10.10.0.0/"), TSL_EINVALID);
    CHECK_INT(tsl_cidr_parse(&p, &bits, "10.10.0.0/1x"), TSL_EINVALID);
    CHECK_INT(tsl_cidr_parse(&p, &bits, "fd00::/129"), TSL_EINVALID);
}

TEST(lpm__longest_prefix_wins_and_duplicates_are_refused)
{
    tsl_lpm t;
    tsl_ip p, a;
    int bits;
    int32_t existing = -1;
    tsl_lpm_match m;
    tsl_lpm_init(&t);
    tsl_cidr_parse(&p, &bits, "10.0.0.0/8");
    CHECK_OK(tsl_lpm_insert(&t, &p, bits, 1, NULL));
    tsl_cidr_parse(&p, &bits, "10.10.0.0/16");
    CHECK_OK(tsl_lpm_insert(&t, &p, bits, 2, NULL));
    tsl_cidr_parse(&p, &bits, "10.10.3.0/24");
    CHECK_OK(tsl_lpm_insert(&t, &p, bits, 3, NULL));
    tsl_cidr_parse(&p, &bits, "10.10.0.0/16");
    CHECK_INT(tsl_lpm_insert(&t, &p, bits, 9, &existing), TSL_EEXISTS);
    CHECK_INT(existing, 2);
    tsl_ip_parse(&a, "10.10.3.17");
    CHECK(tsl_lpm_lookup(&t, &a, &m));
    CHECK_INT(m.value, 3);
    CHECK_INT(m.bits, 120);
    tsl_ip_parse(&a, "10.10.4.1");
    CHECK(tsl_lpm_lookup(&t, &a, &m));
    CHECK_INT(m.value, 2);
    tsl_ip_parse(&a, "10.99.0.1");
    CHECK(tsl_lpm_lookup(&t, &a, &m));
    CHECK_INT(m.value, 1);
    tsl_ip_parse(&a, "11.0.0.1");
    CHECK(!tsl_lpm_lookup(&t, &a, &m));
    tsl_ip_parse(&a, "::ffff:10.10.3.1"); /* the mapped form of an IPv4 address */
    CHECK(tsl_lpm_lookup(&t, &a, &m));
    CHECK_INT(m.value, 3);
    tsl_lpm_free(&t);
}

TEST(lpm__matches_a_brute_force_scan_over_random_prefixes)
{
    enum { NP = 3000, NQ = 20000 };
    static tsl_ip pre[NP];
    static int len[NP];
    tsl_lpm t;
    int stored = 0;
    tsl_lpm_init(&t);
    for (int i = 0; i < NP; i++) {
        tsl_ip p;
        for (int k = 0; k < 16; k++)
            p.b[k] = (uint8_t)next_rand();
        bool v4 = next_rand() & 1;
        int bits;
        if (v4) { /* IPv4 under ::ffff:0:0/96, short prefixes so they nest */
            memset(p.b, 0, 10);
            p.b[10] = p.b[11] = 0xff;
            p.b[12] = (uint8_t)(10 + next_rand() % 3);
            bits = 96 + 8 + (int)(next_rand() % 20);
        } else {
            p.b[0] = 0xfd;
            p.b[1] = (uint8_t)(next_rand() % 3);
            bits = 16 + (int)(next_rand() % 60);
        }
        mask(&p, bits);
        int rc = tsl_lpm_insert(&t, &p, bits, stored, NULL);
        if (rc == TSL_EEXISTS)
            continue;
        CHECK_INT(rc, 0);
        pre[stored] = p;
        len[stored] = bits;
        stored++;
    }
    CHECK_INT(t.count, stored);
    for (int q = 0; q < NQ; q++) {
        tsl_ip a;
        /* a random address near a random stored prefix */
        a = pre[next_rand() % (uint64_t)stored];
        for (int k = 13; k < 16; k++)
            a.b[k] ^= (uint8_t)next_rand();
        if (a.b[0] == 0xfd)
            for (int k = 5; k < 16; k++)
                a.b[k] = (uint8_t)next_rand();
        int best = -1;
        for (int i = 0; i < stored; i++)
            if (covers(&pre[i], len[i], &a) && (best < 0 || len[i] > len[best]))
                best = i;
        tsl_lpm_match m;
        bool hit = tsl_lpm_lookup(&t, &a, &m);
        CHECK_INT(hit, best >= 0);
        if (hit)
            CHECK_INT(m.value, best);
    }
    tsl_lpm_free(&t);
}

int main(void)
{
    RUN(ip__parses_both_families_and_refuses_garbage);
    RUN(cidr__checks_length_and_host_bits);
    RUN(lpm__longest_prefix_wins_and_duplicates_are_refused);
    RUN(lpm__matches_a_brute_force_scan_over_random_prefixes);
    return tsl_test_main();
}
