-- wrk script for bench/api_throughput.py:
--   wrk -s bench/wrk_api.lua http://127.0.0.1:PORT -- TOKEN PATHS_FILE
-- Each request GETs a random path from PATHS_FILE (one per line) with the
-- bearer token; done() prints one machine-readable line (WRKJSON {...}).

local token
local paths = {}

function init(args)
  token = args[1]
  for line in io.lines(args[2]) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  math.randomseed(os.time() * 1000 + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 1000)
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], { ["Authorization"] = "Bearer " .. token })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
