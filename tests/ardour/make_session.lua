-- Makes an Ardour session with one stereo track (strict I/O, so the track carries the plugin's
-- main output only) and Stemflow (VST3) on it, then saves it. The test adds the audio region
-- to the saved session file.
--   SESS_DIR  folder of the new session (named "s")
--   SOLO      optional: a parameter label to set to 1 (e.g. "Bass Solo")
--   AUTOMATE  optional: a parameter label to automate linearly, "LABEL;t0;v0;t1;v1" with times
--             in samples and values in the parameter's unit (e.g. "Bass Gain;88200;0;352800;-12")
ARDOUR.config():set_hide_dummy_backend(false)
ARDOUR.config():set_use_vst3(true)
AudioEngine:set_backend("None (Dummy)", "", "")
create_session(os.getenv("SESS_DIR"), "s", 44100)

function parameter_index(plugin, label)
  for i = 0, plugin:parameter_count() - 1 do
    local index = plugin:nth_parameter(i, true)
    if type(index) == "table" then index = index[1] end
    if plugin:parameter_label(index) == label then return index end
  end
  error("no parameter labelled " .. label)
end

function setup()
  local tracks = Session:new_audio_track(2, 2, nil, 1, "Mix", ARDOUR.PresentationInfo.max_order, ARDOUR.TrackMode.Normal, true)
  local track = tracks:front()
  track:set_strict_io(true)
  local proc = ARDOUR.LuaAPI.new_plugin(Session, "Stemflow", ARDOUR.PluginType.VST3, "")
  if proc:isnil() then error("Stemflow (VST3) is not in Ardour's plugin cache") end
  track:add_processor_by_index(proc, 0, nil, true)
  local plugin = proc:to_insert():plugin(0)
  local solo = os.getenv("SOLO")
  if solo and solo ~= "" then
    ARDOUR.LuaAPI.set_processor_param(proc, parameter_index(plugin, solo), 1.0)
  end
  local automate = os.getenv("AUTOMATE")
  if automate and automate ~= "" then
    local label, t0, v0, t1, v1 = automate:match("([^;]+);([^;]+);([^;]+);([^;]+);([^;]+)")
    local index = parameter_index(plugin, label)
    local list, curve = ARDOUR.LuaAPI.plugin_automation(proc, index)
    list:clear_list()
    curve:add(Temporal.timepos_t(tonumber(t0)), tonumber(v0), false, true)
    curve:add(Temporal.timepos_t(tonumber(t1)), tonumber(v1), false, true)
    local control = proc:to_automatable():automation_control(
      Evoral.Parameter(ARDOUR.AutomationType.PluginAutomation, 0, index), false)
    control:set_automation_state(ARDOUR.AutoState.Play)
  end
  Session:save_state("", false, false, false, false, false)
  print("SESSION-SAVED")
  io.stdout:flush()
end

setup()
collectgarbage()
close_session()
