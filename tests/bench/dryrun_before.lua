-- bench_dryrun's "before" side: capacity ranking, a few ordered sites.
defaults { selection = "capacity", max = 10 }
site "Abidjan"  { order = { "ts-abi-01", "ts-abi-02" } }
site "Adelaide" { allow = { "ts-ade-*" }, fallback = { "Algiers", "*" } }
