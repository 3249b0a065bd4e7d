site "London" { allow = { "ts-lon-*" }, fallback = { "Paris" } }
rule("undo", function(req, list)
  list:remove("ts-lon-02")
  list:reorder(function(a, b)
    list:block_fallback()
    list:add("ts-lon-02")
    return false
  end)
end)
rule("after", function(req, list) list:block_fallback() error("late") end)
