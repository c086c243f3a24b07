-- wrk script for bench/run.py: POST one CDS Hooks request body over and over on keep-alive
-- connections, and print a machine-readable summary.
--
-- Environment:
--   BENCH_BODY     path of the JSON body to post (required)
--   BENCH_SAMPLES  optional file to write every request's latency to (one integer, microseconds,
--                  a line). Only meaningful with one connection per thread (-t N -c N): each thread
--                  times its own request from send to complete response (LuaJIT ffi clock_gettime,
--                  CLOCK_MONOTONIC), so samples of several rounds can be pooled for percentiles.
--
-- The summary is one line:  BENCH_RESULT {json}   (latencies in microseconds, wrk's own histogram)

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_us()
   ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
   return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

local path = os.getenv("BENCH_BODY")
assert(path, "BENCH_BODY is not set")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state); globals so done() can read them.
samples = {}
non_200 = 0
local request_bytes = nil
local sent_at = 0

function request()
   if request_bytes == nil then
      request_bytes = wrk.format()
   end
   sent_at = now_us()
   return request_bytes
end

function response(status, headers, body)
   samples[#samples + 1] = now_us() - sent_at
   if status ~= 200 then
      non_200 = non_200 + 1
   end
end

function done(summary, latency, requests)
   local non_200_total = 0
   local out_path = os.getenv("BENCH_SAMPLES")
   local out = out_path and out_path ~= "" and assert(io.open(out_path, "w")) or nil
   for _, t in ipairs(threads) do
      non_200_total = non_200_total + (tonumber(t:get("non_200")) or 0)
      if out then
         local s = t:get("samples")
         for i = 1, #s do
            out:write(string.format("%d\n", s[i]))
         end
      end
   end
   if out then
      out:close()
   end
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"non_200":%d,' ..
      '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout, non_200_total,
      latency.min, latency.mean, latency.max,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99)))
end
