-- departments.lua - two departments on the London site, each on its own
-- Task Servers: Finance on the finance servers, Engineering on the others,
-- and neither leaves London; Madrid stays in Madrid.
defaults { selection = "capacity", fallback = "block", ttl = 600 }

site "London" { allow = { "ts-lon-*" } }
site "Madrid" { allow = { "ts-mad-*" } }

group "Finance"     { allow = { "ts-lon-fin-*" } }
group "Engineering" { deny  = { "ts-lon-fin-*" } }
