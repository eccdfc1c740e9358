-- GET /api/products/<id> over the seed catalogue, a random id per request (wrk 4.x).
--   wrk -t2 -c64 -d10s -s get_product.lua URL/api/products -- [PRODUCTS]
local products = 300

function init(args)
  products = tonumber(args[1]) or products
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end

function request()
  return wrk.format("GET", "/api/products/" .. math.random(1, products))
end
