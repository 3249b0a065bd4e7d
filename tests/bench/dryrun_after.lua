-- bench_dryrun's "after" side: responsiveness ranking, shorter lists, one
-- site that may no longer fall back, and a rule run on every request.
defaults { selection = "responsiveness", max = 5 }
site "Abidjan"  { order = { "ts-abi-02", "ts-abi-01" } }
site "Adelaide" { allow = { "ts-ade-*" }, fallback = "block" }
group "Finance" { fallback = "block" }
rule("imaging stays local", function(req, list)
  if req.task == "imaging" then list:block_fallback() end
end)
