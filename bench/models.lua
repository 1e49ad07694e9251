-- wrk script for bench/router.sh: POST a fixed body to N models in turn, report one
-- parseable line (the same WRK_RESULT line as post.lua).
--   WRK_BODY_FILE  file holding the request body (required)
--   WRK_MODELS     how many models: requests go to /models/m0/invocations ..
--                  /models/m{N-1}/invocations in turn (default 1); 0: every
--                  request to plain /invocations (a gateway of one model)
--   WRK_LABEL      free text copied into the result line
-- Every request is built once in init(); request() only picks the next one, so
-- one model and fifty cost wrk the same.

local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
   error("WRK_BODY_FILE is not set")
end
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()
local n = tonumber(os.getenv("WRK_MODELS") or "1")

local requests = {}
local next_one = 0

init = function(args)
   local headers = { ["Content-Type"] = "application/json" }
   if n == 0 then
      requests[0] = wrk.format("POST", "/invocations", headers, body)
      n = 1
   else
      for i = 0, n - 1 do
         requests[i] = wrk.format("POST", "/models/m" .. i .. "/invocations", headers, body)
      end
   end
   -- Each thread starts at another model.
   next_one = math.random(0, n - 1)
end

request = function()
   local r = requests[next_one]
   next_one = (next_one + 1) % n
   return r
end

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
