-- alert_wrk.lua: wrk request generator for bench/alert_ingest.sh's fast-client rounds.
-- Every request is a POST of BATCH Alertmanager v2 alerts (env BATCH, default 1), each with a
-- label set of its own (instance=host-<i>, i counting up per thread from a per-thread offset)
-- that collapses into alertname (10) x service (10) = 100 groups, like the peer harness's
-- tools/alert_load.py, so no request dedupes into an earlier one. Only the generation differs:
-- wrk is C with one Lua state per thread, so the client is not what limits the rate.
-- `done` prints the figures as `wrk.<figure> <value>` lines (errors include non-2xx/3xx answers).
local batch = tonumber(os.getenv("BATCH") or "1")
local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
local counter = 0
local base = 0
local threads = {}

function setup(thread)
  thread:set("base", #threads * 100000000)
  table.insert(threads, thread)
end

function init(args)
  base = tonumber(wrk.thread:get("base")) or 0
end

local function alert(j)
  local sev = (j % 7 == 0) and "critical" or "warning"
  return string.format(
    '{"labels":{"alertname":"Alert%d","service":"svc%d","instance":"host-%d","severity":"%s","env":"bench"},'
      .. '"annotations":{"summary":"synthetic alert %d","runbook":"https://example.invalid/rb"},'
      .. '"startsAt":"%s","generatorURL":"http://127.0.0.1/bench"}',
    j % 10, math.floor(j / 10) % 10, j, sev, j, now)
end

function request()
  local parts = {}
  for _ = 1, batch do
    local j = base + counter
    counter = counter + 1
    parts[#parts + 1] = alert(j)
  end
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, "[" .. table.concat(parts, ",") .. "]")
end

function done(summary, latency, requests)
  io.write(string.format("wrk.requests %d\n", summary.requests))
  io.write(string.format("wrk.errors %d\n", summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
  io.write(string.format("wrk.seconds %.3f\n", summary.duration / 1e6))
  io.write(string.format("wrk.p50_ms %.2f\n", latency:percentile(50) / 1000))
  io.write(string.format("wrk.p99_ms %.2f\n", latency:percentile(99) / 1000))
end
