-- finance.lua - the Finance group narrows each site's approved set to the
-- finance servers, ts-fin-01 first; elsewhere the site's own rules apply.
policy "../examples/demo.lua"
inventory "../demo/estate.json"
now "2026-11-25T10:00:00Z"

test "Finance in London: the finance servers, then London's fallback" {
  client = "E90E4254-DA23-5246-BB45-4A21F778B492",
  expect = { "ts-fin-01", "ts-fin-02", "ts-dub-02", "ts-dub-01", "ts-par-01" },
  tiers  = { 0, 0, 1, 1, 2 },
  reasons = { "group \"Finance\" order #1", "group \"Finance\" approved set" },
  strict = true,
}

test "Finance in Frankfurt: the finance server Frankfurt has" {
  ip = "10.50.3.10", department = "Finance",
  expect = { "ts-fin-02" },
}

test "Finance in Dublin, which has no finance server: today's fallback" {
  ip = "10.20.2.12", department = "Finance",
  count = 10,
  tiers = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
  strict = false,
}

test "the request's department wins over the inventory's" {
  client = "6E3E645F-FED2-57CC-A296-53B85DDF87A1",   -- Sales in the inventory
  department = "Finance",
  first = { "ts-fin-01", "ts-fin-02" },
}

test "Sales in London is not narrowed" {
  ip = "10.10.4.21", department = "Sales",
  contains = { "ts-lon-01", "ts-lon-02", "ts-fin-01" },
}
