-- Prints wrk's summary and latency distribution as one JSON line (times in microseconds).
local points = {}
for p = 1, 99 do points[#points + 1] = p end
for _, p in ipairs({99.5, 99.9, 99.99}) do points[#points + 1] = p end

done = function(summary, latency, requests)
  local percentiles = {}
  for _, p in ipairs(points) do
    percentiles[#percentiles + 1] = string.format("[%g, %d]", p, latency:percentile(p))
  end
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "max": %d, "mean": %.1f, "stdev": %.1f, "percentiles": [%s]}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.max, latency.mean, latency.stdev, table.concat(percentiles, ", ")))
end
