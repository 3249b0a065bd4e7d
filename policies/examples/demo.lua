-- demo.lua - the example policy for the demo estate (policies/demo/estate.json).
--
-- What the admins of this estate asked for:
--   * London clients use the London Task Servers in a fixed order, then the
--     other approved servers; if none of those is available, Dublin and then
--     Paris, but only after ten minutes, so that a short outage does not send
--     all of London abroad.
--   * The lab server is for London Lab only; London Lab falls back to London.
--   * Madrid never leaves its own server, even when it is full.
--   * Finance clients use only the finance Task Servers (ts-fin-01 first,
--     their own site's first), and nobody else ever uses them.
--   * Imaging (large packages) never crosses a site boundary.
--
-- Check it:  tsl check policies/examples/demo.lua --db demo.db
-- Test it:   tsl test policies/tests
-- Try it:    tsl --db demo.db list --ip 10.10.4.21 --policy policies/examples/demo.lua

defaults { selection = "capacity", fallback = "default", max = 10, ttl = 3600 }

site "London" {
  order    = { "ts-lon-01", "ts-lon-02" },          -- these first, in this order
  allow    = { "ts-lon-*", "ts-dub-01" },          -- the approved set
  deny     = { "ts-lon-lab" },                     -- never listed for London
  fallback = { "Dublin", "Paris", after = 600 },   -- delayed, ordered fallback
}

site "London Lab" {
  allow    = { "ts-lon-lab" },
  fallback = { "London" },
}

site "Madrid" {
  order    = { "ts-mad-01" },
  fallback = "block",                              -- never outside Madrid
}

group "Finance" {
  allow     = { "ts-fin-*" },                      -- Finance uses only these ...
  exclusive = true,                                -- ... and nobody else does
  order     = { "ts-fin-01" },
}

rule("imaging stays local", function(req, list)
  if req.task == "imaging" then
    list:block_fallback()
  end
end)
