-- london_outage.lua - the demo policy on a small inventory where every
-- London server is down: London falls back to Dublin, then Paris, only
-- after ten minutes, and never to Tokyo; imaging gets nothing at all.
policy "../examples/demo.lua"
inventory {
  sites = {
    { name = "London", subnets = { "10.10.0.0/16" } },
    { name = "Dublin", subnets = { "10.20.0.0/16" } },
    { name = "Paris",  subnets = { "10.30.0.0/16" } },
    { name = "Tokyo",  subnets = { "10.70.0.0/16" } },
  },
  task_servers = {
    { name = "ts-lon-01", sites = { "London" }, service = "stopped" },
    { name = "ts-lon-02", sites = { "London" }, registered = false },
    { name = "ts-fin-01", sites = { "London" }, heartbeat_ago = 3600 },  -- silent
    { name = "ts-dub-02", sites = { "Dublin" }, connections = 100 },
    { name = "ts-par-01", sites = { "Paris" } },
    { name = "ts-tyo-01", sites = { "Tokyo" } },
  },
}

test "London down: Dublin, then Paris, after ten minutes, never Tokyo" {
  ip       = "10.10.1.1",
  expect   = { "ts-dub-02", "ts-par-01" },
  tiers    = { 1, 2 },
  after    = { 600, 600 },
  excludes = { "ts-tyo-*" },
  strict   = false,
}

test "imaging during the outage gets an empty list rather than going abroad" {
  ip      = "10.10.1.1",
  task    = "imaging",
  blocked = true,
  count   = 0,
}

test "Tokyo, which no block names, keeps today's behaviour" {
  ip     = "10.70.1.1",
  expect = { "ts-tyo-01" },
  tiers  = { 0 },
}
