-- POST /api/orders with a unique Idempotency-Key on every request (wrk 4.x).
--   wrk -t2 -c64 -d10s -s post_orders.lua URL/api/orders -- NONCE [PRODUCTS]
-- NONCE makes keys unique across runs (the runner passes `shoplab-bench-<run id>-<case id>`, the prefix
-- by which it deletes the run's orders again afterwards); setup() numbers the wrk
-- threads, each request takes the next value of its thread's counter: no two requests share a key,
-- so none is a replay. PRODUCTS (default 300, the seed catalogue) bounds the random product id;
-- the quantity is always 1.
local created = 0 -- threads set up so far (in the main Lua state)
local me = 0 -- this thread's number (in each thread's state)
local counter = 0
local nonce = "run"
local products = 300

function setup(thread)
  created = created + 1
  thread:set("bench_thread_no", created)
end

function init(args)
  me = bench_thread_no or 0
  nonce = args[1] or tostring(os.time())
  products = tonumber(args[2]) or products
  math.randomseed(os.time() + me * 7919)
end

function request()
  counter = counter + 1
  local body = string.format('{"items":[{"product_id":%d,"quantity":1}]}', math.random(1, products))
  local headers = {
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", nonce, me, counter),
  }
  return wrk.format("POST", "/api/orders", headers, body)
end
