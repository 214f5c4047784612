#!/usr/bin/env bash
# The TUI in a real terminal: `facequant tui` in an 80x24 tmux pane runs a short sweep from the
# setup screen, exports the CSVs and quits; capture-pane shows what a person would have seen.
#
#   tests/tmux_tui.sh WORKDIR [FACEQUANT [DATA]]
#
# WORKDIR: an empty folder (the sweep config, runs/ and the captured screens go there).
# FACEQUANT: the command that starts facequant (default: facequant).
# DATA: the photos to sweep (default: facequant's own default, celebs13 in the shared folder).
# Exit 0 when results and the export path appeared and the TUI quit with status 0; 3 when tmux
# is missing; 1 otherwise, with the last screen on stderr. tests/test_tui.py runs it.
set -euo pipefail

work=$(cd "$1" && pwd)
fq=${2:-facequant}
data=${3:-}
command -v tmux >/dev/null || { echo "tmux_tui: tmux is not installed" >&2; exit 3; }

export TERM=${TERM:-xterm-256color}  # CI may have none; tmux sets the pane's own
sock="$work/tmux.sock"  # a private server: never touches the user's own tmux sessions
tm() { tmux -u -S "$sock" -f /dev/null "$@"; }
trap 'tm kill-server 2>/dev/null || true' EXIT

cat > "$work/sweep.yaml" <<'EOF'
# two distances, two backends, no latency timing: a short real sweep
backends: fp32,int8-pt
distances: 1,6
no-latency: true
EOF
[ -z "$data" ] || echo "data: $data" >> "$work/sweep.yaml"

screen() { tm capture-pane -p -t tui; }
wait_for() {  # wait_for TEXT SECONDS: until TEXT is on the screen
  local deadline=$((SECONDS + $2))
  until screen | grep -qF -- "$1"; do
    if (( SECONDS >= deadline )); then
      echo "tmux_tui: '$1' did not appear within $2 s; the screen was:" >&2
      screen >&2
      return 1
    fi
    sleep 0.5
  done
}

# The exit status is printed after the TUI leaves, so the test can check it quit cleanly.
tm new-session -d -s tui -x 80 -y 24 -c "$work" \
  "$fq tui --config sweep.yaml; echo TUI-EXIT=\$?; sleep 120"

wait_for "distance sweep setup" 60
wait_for "Run (r)" 10
screen > "$work/setup.txt"
tm send-keys -t tui r
wait_for "complete" 300
screen > "$work/results.txt"
grep -qE "^ *fp32 +6 " "$work/results.txt" || { echo "tmux_tui: no fp32 row at 6 m" >&2; cat "$work/results.txt" >&2; exit 1; }
grep -qE "^ *int8-pt +6 " "$work/results.txt" || { echo "tmux_tui: no int8-pt row at 6 m" >&2; exit 1; }

tm send-keys -t tui e
wait_for "exported" 30
sleep 0.5  # let the notification finish drawing
screen > "$work/export.txt"
run_dir=$(cd "$work/runs" && ls -d */ | head -n 1)
run_dir=${run_dir%/}
grep -qF "runs/$run_dir" "$work/export.txt" || { echo "tmux_tui: export path runs/$run_dir not shown" >&2; cat "$work/export.txt" >&2; exit 1; }

tm send-keys -t tui q
wait_for "TUI-EXIT=" 60
screen > "$work/exit.txt"
grep -qF "TUI-EXIT=0" "$work/exit.txt" || { echo "tmux_tui: the TUI did not exit with 0" >&2; cat "$work/exit.txt" >&2; exit 1; }
echo "tmux_tui: ok (runs/$run_dir)"
