-- Checkouts through the gateway, each with a cart filled just before it and its own
-- Idempotency-Key. Arguments: <tokens file> <product id> <threads> <lag>.
--
-- Each thread owns a slice of the pre-made customers and walks it in a ring: it fills the next
-- customer's cart (PUT one unit of the product) and checks out the customer it filled <lag>
-- fills ago. With <lag> at least the connections per thread, a fill has been answered before
-- its checkout is sent, and with more customers than twice the lag a checkout has been
-- answered before the same customer's next fill. Throughput is counted from the 201 answers
-- (one per confirmed order, each of which also cost one cart PUT).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local tokens = {}
local product
local lag
local fills = 0
local offset = 0
local queued = nil
local key_prefix
local order_body = '{"payment_token":"tok_visa","shipping_address":{"name":"Bench Baker",' ..
  '"line1":"1 Oven Lane","city":"Leeds","postal_code":"LS1 1AA","country":"GB"}}'

s_201, s_200, s_4xx, s_5xx = 0, 0, 0, 0
s_problems = ""

function init(args)
  local file, threads = args[1], tonumber(args[3])
  product = args[2]
  lag = tonumber(args[4])
  local index = 0
  for line in io.lines(file) do
    if line ~= "" then
      if index % threads == thread_index - 1 then
        table.insert(tokens, line)
      end
      index = index + 1
    end
  end
  if #tokens < 2 * lag + 2 then
    error(string.format("thread %d has %d customers; %d lag needs %d", thread_index, #tokens,
      lag, 2 * lag + 2))
  end
  -- Random bytes, not the clock: two runs starting in the same second must not share keys.
  local urandom = assert(io.open("/dev/urandom", "rb"))
  local bytes = urandom:read(8)
  urandom:close()
  -- Start the ring somewhere else each run: the last run's unanswered checkouts were for the
  -- customers just before where it stopped.
  offset = bytes:byte(1) * 256 + bytes:byte(2)
  key_prefix = "bench-" .. bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)
    .. "-" .. thread_index .. "-"
end

local function headers_for(customer)
  return {
    ["Authorization"] = "Bearer " .. customer,
    ["Content-Type"] = "application/json",
  }
end

function request()
  if queued then
    local customer = queued
    queued = nil
    local headers = headers_for(customer)
    headers["Idempotency-Key"] = key_prefix .. fills
    return wrk.format("POST", "/api/v1/orders", headers, order_body)
  end
  local n = #tokens
  local customer = tokens[(offset + fills) % n + 1]
  if fills >= lag then
    queued = tokens[(offset + fills - lag) % n + 1]
  end
  fills = fills + 1
  return wrk.format("PUT", "/api/v1/cart/items/" .. product, headers_for(customer),
    '{"quantity":1}')
end

function response(status, headers, body)
  if status == 201 then
    s_201 = s_201 + 1
  elseif status == 200 then
    s_200 = s_200 + 1
  elseif status >= 500 then
    s_5xx = s_5xx + 1
    if #s_problems < 200 and not s_problems:find(tostring(status), 1, true) then
      s_problems = s_problems .. status .. " "
    end
  elseif status >= 400 then
    s_4xx = s_4xx + 1
    -- Which problem, for the report: the first few problem types a thread saw.
    if #s_problems < 200 then
      local kind = body:match('"type"%s*:%s*"[^"]-([%w%-]+)"') or tostring(status)
      if not s_problems:find(kind, 1, true) then
        s_problems = s_problems .. kind .. " "
      end
    end
  end
end
