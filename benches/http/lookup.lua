-- GET random existing keys u1..uN.
local n = tonumber(os.getenv("KEYS") or "1000000")
local prefix = os.getenv("PREFIX") or "u"
math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/keys/" .. prefix .. math.random(1, n))
end
done = function(summary, latency, requests)
  io.write(string.format("non-2xx: %d of %d; p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms\n", summary.errors.status, summary.requests,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000))
end
