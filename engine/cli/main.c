/* main.c - TEMPORARY placeholder until the tsl command lands. */
#include "tsl.h"
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "tsl: %s\n", tsl_strerror(TSL_OK));
    return 0;
}
