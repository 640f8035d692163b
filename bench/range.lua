-- wrk's requests for bench/range.sh and bench/peer-range.sh: GET
-- /range/{a random 5-hex prefix}, with Add-Padding: true when PADDING=true.
local padding = os.getenv("PADDING")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  local headers = { ["User-Agent"] = "wrk" }
  if padding == "true" then headers["Add-Padding"] = "true" end
  return wrk.format("GET", string.format("/range/%05X", math.random(0, 1048575)), headers)
end
