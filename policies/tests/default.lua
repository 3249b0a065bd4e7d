-- default.lua - sites the demo policy does not name keep today's default
-- logic exactly.
policy "../examples/demo.lua"
inventory "../demo/estate.json"
now "2026-11-25T10:00:00Z"

test "Tokyo" { ip = "10.70.1.10", expect = { "ts-tyo-01" }, tiers = { 0 }, strict = false }

test "New York, ranked by free capacity" {
  ip = "10.60.1.10", expect = { "ts-nyc-02", "ts-nyc-01" },
}

test "Paris lists its running server only" {
  ip = "10.30.1.20", expect = { "ts-par-01" },
}

test "an explicit site wins over the subnet" {
  client = "DEBA8E63-33A9-5D3F-A8BA-BAE7064EBBD0",   -- in London's subnet, assigned to Tokyo
  site = "Tokyo", expect = { "ts-tyo-01" },
}

test "a client with no site gets every available server, as today" {
  ip = "192.168.1.50", site = false, count = 10,
  tiers = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 },
  excludes = { "ts-par-02", "ts-fra-02" },
}
