-- Bounces the track "Mix" of a saved session through its plugin (Track:bounce_range with the
-- plugin as endpoint), as Ardour's "Bounce (with processing)" does.
--   SESS_DIR  the session's folder (session "s"); LEN  samples to bounce from the start
ARDOUR.config():set_hide_dummy_backend(false)
ARDOUR.config():set_use_vst3(true)
AudioEngine:set_backend("None (Dummy)", "", "")
load_session(os.getenv("SESS_DIR"), "s")

function bounce()
  local track = Session:route_by_name("Mix"):to_track()
  local region = track:bounce_range(0, tonumber(os.getenv("LEN")), ARDOUR.InterThreadInfo(), track:nth_plugin(0), true, "bounce", false)
  if region:isnil() then error("the bounce made no region") end
  print("BOUNCE-DONE")
  io.stdout:flush()
end

bounce()
collectgarbage()
close_session()
