/*
 * fuzz_ip.c - address and CIDR parsing (tsl_ip_parse, tsl_cidr_parse).
 *
 * Any byte string must parse or be refused; a parsed address must format
 * and parse back to itself.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tsl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    tsl_ip ip;
    if (tsl_ip_parse(&ip, text) == 0) {
        char back[64];
        tsl_ip_format(back, sizeof back, &ip);
        tsl_ip again;
        if (tsl_ip_parse(&again, back) != 0 || memcmp(&ip, &again, sizeof ip) != 0)
            abort();
    }
    int bits = -1;
    if (tsl_cidr_parse(&ip, &bits, text) == 0 && (bits < 0 || bits > 128))
        abort();
    free(text);
    return 0;
}
