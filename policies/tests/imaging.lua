-- imaging.lua - the "imaging stays local" rule: imaging never crosses a
-- site boundary; other tasks keep their fallback.
policy "../examples/demo.lua"
inventory "../demo/estate.json"
now "2026-11-25T10:00:00Z"

test "imaging from London: the approved set only" {
  ip     = "10.10.4.22",
  task   = "imaging",
  expect = { "ts-lon-01", "ts-lon-02", "ts-dub-01" },
  tiers  = { 0, 0, 0 },
}

test "software delivery from London keeps the fallback tiers" {
  ip       = "10.10.4.22",
  task     = "software-delivery",
  contains = { "ts-dub-02", "ts-par-01" },
}

test "imaging from Dublin, which no block names: Dublin's own servers" {
  ip     = "10.20.2.11",
  task   = "imaging",
  expect = { "ts-dub-02", "ts-dub-01" },
}

test "imaging from a client with no site: nothing is local, so nothing" {
  ip      = "192.168.1.50",
  task    = "imaging",
  blocked = true,
  count   = 0,
  site    = false,
}
