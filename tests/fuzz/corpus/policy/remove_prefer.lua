site "London" { allow = { "ts-lon-*" }, fallback = { "Paris" } }
rule("nested", function(req, list)
  list:remove(function(e)
    list:prefer("ts-par-*")
    return e.name == "ts-lon-01"
  end)
end)
