-- bench_heartbeat.lua - wrk script for tests/bench/bench_heartbeat.sh: each
-- request is POST /v1/task-servers/NAME/heartbeat for the next server of a
-- file of names (one per line), with the Task Servers' token when a file
-- holding it is given, and a body whose connections change every request.
--
-- usage: wrk -d SECONDS -s bench_heartbeat.lua URL -- NAMES_FILE [TOKEN_FILE]

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  names = {}
  for line in io.lines(args[1]) do names[#names + 1] = line end
  headers = {["Content-Type"] = "application/json"}
  if args[2] then
    local f = io.open(args[2])
    if f then
      headers["Authorization"] = "Bearer " .. f:read("*l")
      f:close()
    end
  end
  n = ((id or 0) * 7919) % #names
  seq = 0
  bad = 0
end

function request()
  n = n + 1
  if n > #names then n = 1 end
  seq = seq + 1
  return wrk.format("POST", "/v1/task-servers/" .. names[n] .. "/heartbeat", headers,
                    '{"connections":' .. (seq % 5000) .. ',"service":"running"}')
end

function response(status, headers, body)
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + (t:get("bad") or 0) end
  io.write(string.format("requests %d, non-200 %d, p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, " ..
                         "p99.9 %.2f ms, %.0f requests/s\n",
                         summary.requests, failed, latency:percentile(50) / 1000,
                         latency:percentile(90) / 1000, latency:percentile(99) / 1000,
                         latency:percentile(99.9) / 1000,
                         summary.requests / (summary.duration / 1e6)))
end
