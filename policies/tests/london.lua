-- london.lua - London under the demo policy: the ordered list, the approved
-- set, the lab server kept out, and the delayed fallback to Dublin then Paris.
policy "../examples/demo.lua"
inventory "../demo/estate.json"
now "2026-11-25T10:00:00Z"

test "a London client gets the London order, then the approved set, then Dublin and Paris" {
  ip      = "10.10.4.22",
  expect  = { "ts-lon-01", "ts-lon-02", "ts-dub-01", "ts-dub-02", "ts-par-01" },
  tiers   = { 0, 0, 0, 1, 2 },
  after   = { 0, 0, 0, 600, 600 },
  reasons = { "order #1", "order #2", "approved set", "fallback tier 1", "fallback tier 2" },
  strict  = true,
  blocked = false,
  site    = "London",
}

test "the lab server is never listed for London" {
  ip       = "10.10.5.40",
  excludes = { "ts-lon-lab", "ts-par-02" },   -- denied; stopped
}

test "an IPv6 London client gets the same order" {
  ip    = "fd00:10::5:41",
  first = { "ts-lon-01", "ts-lon-02" },
  site  = "London",
}

test "a recent error on ts-lon-01 does not reorder an admin's order" {
  client = "6E3E645F-FED2-57CC-A296-53B85DDF87A1",
  first  = { "ts-lon-01", "ts-lon-02" },
}

test "London Lab uses its own server, then London's approved set in London's order" {
  ip     = "10.10.200.31",
  expect = { "ts-lon-lab", "ts-lon-01", "ts-lon-02", "ts-dub-01" },
  tiers  = { 0, 1, 1, 1 },
  site   = "London Lab",
}
