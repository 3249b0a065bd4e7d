-- bench_broker.lua - wrk script for tests/bench/bench_broker.sh: each
-- request is GET /v1/task-servers for the next client of a file of query
-- strings ("client=GUID&ip=IP", one per line, shuffled), so every request
-- names a different client and adapter; each wrk thread starts at its own
-- offset.  wrk runs for its -d duration (a thread that stops early would
-- still be timed for all of it), and done() reports what it counted.
--
-- usage: wrk -d SECONDS -s bench_broker.lua URL -- PATHS_FILE

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    paths[#paths + 1] = wrk.format("GET", "/v1/task-servers?" .. line)
  end
  n = ((id or 0) * 50021) % #paths
  done_count = 0
  bad = 0
end

function request()
  n = n + 1
  if n > #paths then n = 1 end
  return paths[n]
end

function response(status, headers, body)
  done_count = done_count + 1
  if status ~= 200 then bad = bad + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, t in ipairs(threads) do failed = failed + (t:get("bad") or 0) end
  local secs = summary.duration / 1e6
  io.write(string.format("requests      %d\n", summary.requests))
  io.write(string.format("non-200       %d\n", failed))
  io.write(string.format("socket errors %d\n", summary.errors.connect + summary.errors.read +
                         summary.errors.write + summary.errors.timeout))
  io.write(string.format("duration      %.2f s\n", secs))
  io.write(string.format("requests/s    %.0f\n", summary.requests / secs))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("latency p%-5s %.0f us\n", tostring(p), latency:percentile(p)))
  end
  io.write(string.format("latency max   %.0f us\n", latency.max))
end
