local s = string.rep("", math.maxinteger)
pcall(string.rep, "x", 1 << 40)
pcall(function() return string.rep("(", 150000):find("%b()") end)
local hay = string.rep("a", 1 << 16)
assert(hay:find(string.rep("a", 1 << 15) .. "b", 1, true) == nil)
local t = {} for i = 1, 30000 do t[i] = -i end
pcall(table.sort, t)
pcall(table.concat, setmetatable({}, { __index = tostring }), "", 1, math.maxinteger)
pcall(table.move, {}, 1, math.maxinteger - 1, 1)
assert(tostring(pairs) == "function")
rule("slow", function(req, list)
  while true do local x = string.rep("ab", 1 << 16):upper() end
end)
