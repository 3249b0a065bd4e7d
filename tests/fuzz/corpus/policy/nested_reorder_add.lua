site "London" { allow = { "ts-lon-*" }, fallback = { "Paris" } }
rule("nested", function(req, list)
  list:remove("ts-lon-02")
  list:reorder(function(a, b)
    list:add("ts-lon-02")
    list:reorder(function(x, y) return x.name < y.name end)
    return a.name < b.name
  end)
end)
