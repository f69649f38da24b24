-- POST batches of `batch` new keys; keys are unique per wrk thread and connection.
local counter = 0
local batch = tonumber(os.getenv("BATCH") or "100")
local prefix = os.getenv("PREFIX") or "u"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    parts[i] = string.format('{"key":"%s%d","value":"cGstdmFsdWUtMDEyMzQ1Njc4OWFiY2RlZg==","expected_version":0}', prefix, counter)
  end
  return wrk.format(nil, "/v1/mutations", nil, '{"mutations":[' .. table.concat(parts, ",") .. ']}')
end
local bad = 0
response = function(status, headers, body)
  if status ~= 202 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("non-202 responses: %d of %d\n", summary.errors.status, summary.requests))
end
