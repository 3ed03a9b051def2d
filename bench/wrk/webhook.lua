-- wrk -s bench/wrk/webhook.lua URL/account/stripe-webhook/ with BODIES=file from
-- webhook_bodies.py and WRK_THREADS=wrk's -t: each thread posts its own share of the events, each once, in order.
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "2")
  local path = os.getenv("BODIES") or "/tmp/webhook-bodies.txt"
  bodies = {}
  local n = 0
  for line in io.lines(path) do
    if n % nthreads == id then
      local tab = line:find("\t", 1, true)
      table.insert(bodies, { line:sub(1, tab - 1), line:sub(tab + 1) })
    end
    n = n + 1
  end
  next_body = 1
end

function request()
  local item = bodies[next_body]
  if item == nil then
    -- Out of unique events: stop rather than redeliver (redeliveries are another measure).
    wrk.thread:stop()
    item = bodies[1]
  end
  next_body = next_body + 1
  return wrk.format("POST", nil, {
    ["Content-Type"] = "application/json",
    ["Stripe-Signature"] = item[1],
  }, item[2])
end

function done(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
