-- finance.lua - Finance clients use only the finance servers (ts-fin-01
-- first, their own site's first), and nobody else uses them; the site's
-- fallback rules still govern, inside the finance servers.
policy "../examples/demo.lua"
inventory "../demo/estate.json"
now "2026-11-25T10:00:00Z"

test "Finance in London: London's finance servers; Dublin and Paris have none" {
  client = "E90E4254-DA23-5246-BB45-4A21F778B492",
  expect = { "ts-fin-01", "ts-fin-02" },
  tiers  = { 0, 0 },
  reasons = { "group \"Finance\" order #1", "group \"Finance\" approved set" },
  strict = true,
}

test "Finance in Frankfurt: the finance server Frankfurt has" {
  ip = "10.50.3.10", department = "Finance",
  expect = { "ts-fin-02" },
}

test "Finance in Dublin, which has no finance server: fallback, inside the finance servers" {
  ip = "10.20.2.12", department = "Finance",
  expect = { "ts-fin-02", "ts-fin-01" },
  tiers = { 1, 1 },
  strict = false,
}

test "a known client's department is the inventory's, whatever the request says" {
  client = "6E3E645F-FED2-57CC-A296-53B85DDF87A1",   -- Sales in the inventory
  department = "Finance",
  first = { "ts-lon-01", "ts-lon-02" },
  excludes = { "ts-fin-*" },
}

test "an unknown client's department is the request's" {
  client = "00000000-0000-0000-0000-00000000F1A0", ip = "10.10.9.9",
  department = "Finance",
  expect = { "ts-fin-01", "ts-fin-02" },
}

test "nobody else uses the finance servers: Sales in London" {
  ip = "10.10.4.21", department = "Sales",
  contains = { "ts-lon-01", "ts-lon-02" },
  excludes = { "ts-fin-*" },
}

test "nobody else uses the finance servers: IT in Frankfurt, where ts-fin-02 is a candidate" {
  ip = "10.50.4.61", department = "IT",
  expect = { "ts-fra-01" },
}
