-- madrid.lua - Madrid never leaves its approved set, even when its only
-- server is full or down.
policy "../examples/demo.lua"
inventory "../demo/estate.json"
now "2026-11-25T10:00:00Z"

test "Madrid gets only ts-mad-01, even at its registration cap" {
  ip      = "10.40.1.15",
  expect  = { "ts-mad-01" },
  reasons = { "at its registration cap" },
  strict  = true,
  blocked = false,
}

test "imaging in Madrid is the same list" {
  ip     = "10.40.2.30",
  task   = "imaging",
  expect = { "ts-mad-01" },
}
