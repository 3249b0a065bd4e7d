-- imaging_local.lua - imaging never crosses a site boundary (large
-- packages over a WAN link); every other task keeps the default fallback.
defaults { selection = "capacity", fallback = "default", ttl = 600 }

rule("imaging stays local", function(req, list)
  if req.task == "imaging" then
    list:block_fallback()
  end
end)
