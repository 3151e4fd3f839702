-- wrk script for POST /retrieve: cycles through the request bodies in $WRK_BODIES (one JSON
-- object per line, written by loadtests/histories.py) and prints one JSON line of results.
--
--   WRK_BODIES=bodies.jsonl wrk -t1 -c32 -d30s -s loadtests/wrk_retrieve.lua http://127.0.0.1:8000
--
-- wrk is a C load generator: it costs the machine a tenth of what locust does per request,
-- which matters when the load generator shares the cores with the server it measures.
-- Responses are not parsed (that is what costs); non-2xx statuses are counted as errors.

local bodies = {}
for line in io.lines(os.getenv("WRK_BODIES")) do
  bodies[#bodies + 1] = line
end
local next_body = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, "/retrieve", nil, bodies[next_body])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "status_errors": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.mean))
end
