-- block_fallback.lua - every site of the europe estate keeps to its own
-- Task Servers: fallback is blocked, so no client ever registers outside
-- its site's approved set, even when all of them are down.
defaults { selection = "capacity", fallback = "block", ttl = 600 }

site "Madrid" { allow = { "ts-mad-*" } }
site "London" { allow = { "ts-lon-*" } }
