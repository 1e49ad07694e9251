-- wrk script for bench/serving.sh: POST a fixed body, report one parseable line.
--   WRK_BODY_FILE     file holding the request body (required)
--   WRK_CONTENT_TYPE  Content-Type header (default application/json)
--   WRK_LABEL         free text copied into the result line
-- done() prints:
--   WRK_RESULT requests=N duration_s=S rps=R p50_ms=A p90_ms=B p99_ms=C max_ms=D non2xx=E socket_errors=F label=L

local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
   error("WRK_BODY_FILE is not set")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/json"

-- No request() function: wrk then builds this request once and reuses it.

done = function(summary, latency, requests)
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d socket_errors=%d label=%s\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000,
      e.status, e.connect + e.read + e.write + e.timeout,
      os.getenv("WRK_LABEL") or ""))
end
