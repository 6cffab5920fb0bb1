-- wrk script for bench/safety.py: every connection is a client address of its
-- own (X-Forwarded-For, behind the trusted proxy the bench configures), and
-- every request carries a consistency token far past the log's head.
local token = os.getenv("HOSTILE_TOKEN") or "1-999999999"
local clients = tonumber(os.getenv("HOSTILE_CLIENTS") or "16")
local counter = 0

function setup(thread)
end

function init(args)
end

request = function()
  counter = counter + 1
  local address = "198.51.100." .. tostring(counter % clients + 1)
  return wrk.format("GET", nil, {
    ["X-Consistency-Token"] = token,
    ["X-Forwarded-For"] = address,
  })
end

done = function(summary, latency, requests)
  local codes = summary.errors
  io.write(string.format("requests %d non2xx %d timeouts %d\n",
    summary.requests, codes.status, codes.timeout))
end
