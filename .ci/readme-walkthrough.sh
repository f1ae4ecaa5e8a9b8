#!/usr/bin/env bash
# Runs the README's walk-through ("A transfer with curl" up to "The API")
# as a newcomer would: `go run ./cmd/transferd` in demo mode on the
# README's ports, then every ```sh block of those sections, in order, in
# one shell. curl fails on any HTTP error, so a 4xx or 5xx anywhere (a
# missing step, a stale id) fails the check; at the end no transfer may
# have failed.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

WORK=$(mktemp -d /tmp/transferd-walkthrough.XXXXXX)
python3 - README.md >"$WORK/walkthrough.sh" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
start = text.index("## A transfer with curl")
end = text.index("## The API")
blocks = re.findall(r"^ *```sh\n(.*?)^ *```", text[start:end], re.S | re.M)
if len(blocks) < 6:
    sys.exit("found only %d sh blocks in the walk-through" % len(blocks))
for b in blocks:
    # Blocks inside list items are indented; the shell does not care.
    print(b)
PY

# In a process group of its own: `go run` does not pass SIGTERM on to the
# binary it built, so the whole group is stopped, or the binary outlives
# the script and holds the ports.
TRANSFERD_DATA_DIR="$WORK/data" setsid go run ./cmd/transferd >"$WORK/stdout.log" 2>"$WORK/transferd.log" &
PID=$!
stop() {
  kill -TERM -- -"$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT
# Wait for the "listening" log line (go run compiles first).
if ! timeout 180 bash -c "until grep -q '\"message\":\"listening\"' '$WORK/transferd.log'; do
    kill -0 $PID 2>/dev/null || exit 1; sleep 0.2; done"; then
  cat "$WORK/transferd.log"
  echo "transferd did not start" >&2
  exit 1
fi

# The walk-through, with curl failing on HTTP errors and every command shown.
{
  echo 'set -euo pipefail'
  echo 'curl() { command curl --fail-with-body "$@"; echo; }'
  echo 'set -x'
  cat "$WORK/walkthrough.sh"
} >"$WORK/run.sh"
if ! bash "$WORK/run.sh"; then
  echo "the README walk-through failed; transferd's log:" >&2
  tail -50 "$WORK/transferd.log" >&2
  exit 1
fi

failed=$(curl -s 'localhost:8080/v1/transfers?state=failed,cancelled' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
completed=$(curl -s 'localhost:8080/v1/transfers?state=completed' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))')
echo "walk-through: $completed transfers completed, $failed failed or cancelled"
if [ "$failed" != 0 ] || [ "$completed" != 4 ]; then
  exit 1
fi
