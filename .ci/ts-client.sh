#!/usr/bin/env bash
# The TypeScript integration check: regenerates client/ts/schema.d.ts
# with openapi-typescript (default options) and fails if the committed one
# differs, compiles client/ts/transfer.mts with tsc --strict (which also
# proves the provider-specific request shapes are enforced), and runs it
# against a demo transferd on free ports: a whole manual transfer and a
# typed validation problem. Needs `npm ci` first.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

npx --no-install openapi-typescript openapi.yaml -o client/ts/schema.d.ts >/dev/null
git diff --exit-code -- client/ts/schema.d.ts
WORK=$(mktemp -d /tmp/transferd-ts.XXXXXX)
npx --no-install tsc -p client/ts --outDir "$WORK/dist"
# tsc output resolves openapi-fetch from a node_modules beside it.
ln -s "$PWD/node_modules" "$WORK/node_modules"

go build -o "$WORK/transferd" ./cmd/transferd
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
API_PORT=$(free_port); SIM_PORT=$(free_port)
TRANSFERD_LISTEN_ADDR=127.0.0.1:$API_PORT TRANSFERD_DEMO_ADDR=127.0.0.1:$SIM_PORT TRANSFERD_DATA_DIR="$WORK/data" \
  "$WORK/transferd" 2>"$WORK/transferd.log" &
PID=$!
stop() {
  kill -TERM "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap stop EXIT
if ! timeout 60 bash -c "until grep -q '\"message\":\"listening\"' '$WORK/transferd.log'; do
    kill -0 $PID 2>/dev/null || exit 1; sleep 0.1; done"; then
  cat "$WORK/transferd.log" >&2
  exit 1
fi
TRANSFERD_URL=http://127.0.0.1:$API_PORT TRANSFERD_SIM_URL=http://127.0.0.1:$SIM_PORT node "$WORK/dist/transfer.mjs"
