#!/usr/bin/env bash
# Retakes the editor screenshot shown in README.md: builds the standalone application, starts a
# virtual X server, plays the demo mix through the plugin with no audio device, waits until the
# priors are loaded and a frame is being separated, grabs the editor's window and writes a small
# PNG.
#
#   scripts/screenshot-editor.sh [OUTPUT.png]        (default: docs/editor.png)
#
# Environment: CAPTURE_AT  seconds of audio played before the grab (default 15.5: frame 2 is in
#                          work from 14 s, and the meters have had 6 s of separated output);
#              PROFILE     cargo profile to build and run (default: release, as a producer runs
#                          it; `dev` builds faster and separates slower).
# Needs Xvfb, ImageMagick and xwininfo (Debian: xvfb, imagemagick, x11-utils), the ALSA and JACK
# headers the standalone builds against (libasound2-dev, libjack-jackd2-dev) and the ONNX Runtime
# that `cargo xtask setup` installs.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/editor.png}
capture_at=${CAPTURE_AT:-15.5}
profile=${PROFILE:-release}
log=$(mktemp -t stemflow-standalone.XXXXXX.log)
raw=$(mktemp -t stemflow-editor.XXXXXX.png)

fail() {
    echo "screenshot-editor: $*" >&2
    exit 1
}

for tool in Xvfb import convert xwininfo; do
    command -v "$tool" >/dev/null || fail "$tool not found (Debian packages: xvfb, imagemagick, x11-utils)"
done

cargo build --profile "$profile" --features standalone --bin stemflow-standalone
case $profile in
    dev) bin=target/debug/stemflow-standalone ;;
    *) bin=target/$profile/stemflow-standalone ;;
esac

display=90
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do
    display=$((display + 1))
done
Xvfb ":$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
app=
cleanup() {
    [ -n "$app" ] && kill "$app" 2>/dev/null || true
    kill "$xvfb" 2>/dev/null || true
    rm -f "$raw"
}
trap cleanup EXIT
for _ in $(seq 100); do
    [ -e "/tmp/.X11-unix/X$display" ] && break
    sleep 0.1
done
[ -e "/tmp/.X11-unix/X$display" ] || fail "Xvfb did not start on :$display"
export DISPLAY=":$display"

"$bin" --file models/demo/mix.wav --backend dummy >"$log" 2>&1 &
app=$!

# The file starts playing when the wrapper is ready; wait for that line and for the priors.
wait_for() {
    local pattern=$1 what=$2 seconds=$3
    for _ in $(seq $((seconds * 10))); do
        grep -q "$pattern" "$log" && return 0
        kill -0 "$app" 2>/dev/null || fail "the standalone exited before $what; its log ($log):
$(tail -20 "$log")"
        sleep 0.1
    done
    fail "no sign of $what after $seconds s; the log ($log):
$(tail -20 "$log")"
}
wait_for "Stemflow: playing" "the file playing" 60
started=$(date +%s.%N)
wait_for "priors loaded" "the priors loading" 60
grep -q "passes audio through" "$log" && fail "the plugin could not separate: $(grep 'passes audio through' "$log")"

window=
for _ in $(seq 100); do
    window=$(xwininfo -root -tree | awk '/"Stemflow"/ { print $1; exit }')
    [ -n "$window" ] && break
    sleep 0.1
done
[ -n "$window" ] || fail "the editor's window did not appear"

remaining=$(echo "$started + $capture_at - $(date +%s.%N)" | bc)
if [ "$(echo "$remaining > 0" | bc)" = 1 ]; then
    sleep "$remaining"
fi
kill -0 "$app" 2>/dev/null || fail "the standalone exited; its log ($log):
$(tail -20 "$log")"

import -window "$window" "$raw"
mkdir -p "$(dirname "$out")"
# A palette of 64 colours keeps the flat UI legible and the file small.
convert "$raw" -strip -dither None -colors 64 "PNG8:$out"
echo "screenshot-editor: wrote $out ($(stat -c %s "$out") bytes, $(identify -format '%wx%h' "$out")); log: $log"
