-- madrid_down.lua - with ts-mad-01 stopped, Madrid clients get an empty,
-- blocked list, never another site's server.
policy "../examples/demo.lua"
inventory {
  sites = {
    { name = "Madrid", subnets = { "10.40.0.0/20" } },
    { name = "Paris",  subnets = { "10.30.0.0/16" } },
  },
  task_servers = {
    { name = "ts-mad-01", sites = { "Madrid" }, service = "stopped" },
    { name = "ts-par-01", sites = { "Paris" } },
  },
}

test "Madrid is blocked, with the reason" {
  ip       = "10.40.1.15",
  blocked  = true,
  count    = 0,
  excludes = { "ts-par-01" },
}

test "Paris is unaffected" {
  ip     = "10.30.1.1",
  expect = { "ts-par-01" },
}
