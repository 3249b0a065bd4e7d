/*
 * sim_broker.c - the real broker, in-process, behind the simulator's
 * broker interface (sim.h): imports the scenario's estate into a fresh
 * store in the work directory, starts the broker on 127.0.0.1, and stops
 * it for an outage.  Built only with the broker (TSL_HAVE_BROKER).
 *
 * Used by: sim.c.  Needs: sim.h, engine/broker/broker.h.
 */
#include "sim_internal.h"

#ifdef TSL_HAVE_BROKER
#error "the broker adapter is written when the broker lands"
#else
const tsl_sim_broker_ops *tsl_sim_broker_real(void)
{
    return NULL;
}
#endif
