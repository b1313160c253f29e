-- Shared by the bench's wrk scripts: one machine-readable line at the end of a run, with the
-- status counts every thread kept (scripts that count set the s_* globals in response()).
threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_index", thread_count)
  table.insert(threads, thread)
end

local function count(name)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get(name) or 0)
  end
  return total
end

local function problems()
  local seen = ""
  for _, thread in ipairs(threads) do
    seen = seen .. (thread:get("s_problems") or "")
  end
  return (seen:gsub('[^%w%- ]', ""))
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"seconds":%.4f,"rps":%.2f,' ..
    '"p50_ms":%.4f,"p90_ms":%.4f,"p99_ms":%.4f,"max_ms":%.4f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"counted":{"201":%d,"200":%d,"4xx":%d,"5xx":%d},"problems":"%s"}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    e.connect, e.read, e.write, e.status, e.timeout,
    count("s_201"), count("s_200"), count("s_4xx"), count("s_5xx"), problems()))
end
