-- london_strict.lua - London's clients use London's three general Task
-- Servers strictly in this order; when none of them answers, Manchester,
-- but only once they have been failing for two minutes (a short outage
-- does not send the site away).
defaults { selection = "capacity", ttl = 120 }

site "London" {
  order    = { "ts-lon-01", "ts-lon-02", "ts-lon-03" },
  fallback = { "Manchester", after = 120 },
}
