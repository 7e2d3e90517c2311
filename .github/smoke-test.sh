#!/usr/bin/env bash
# Runs a built kafka-connector binary as a user first does: `version`, then
# `dev` until its demo function has received the three sample messages and
# /readyz answers 200, then stops it with Ctrl-C, as a user would, and
# wants a clean exit. The embedded broker, the demo gateway and the
# endpoints listen on free loopback ports, so that nothing else running
# here is in the way.
#
#   .github/smoke-test.sh dist/kafka-connector_linux_amd64_v1/kafka-connector ["0.1.0 (commit abc...)"]
#
# The second argument, when given, is what `version` must print after
# "kafka-connector ".
set -euo pipefail

bin=${1:?usage: smoke-test.sh BINARY [VERSION]}
want=${2:-}

fail() {
  echo "smoke-test.sh: $*" >&2
  exit 1
}

got=$("$bin" version)
echo "$got"
if [[ -n "$want" && "$got" != "kafka-connector $want" ]]; then
  fail "version printed \"$got\", want \"kafka-connector $want\""
fi

dir=$(mktemp -d)
pid=
cleanup() {
  if [[ -n "$pid" ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

http_addr=127.0.0.1:0 "$bin" dev -kafka-addr 127.0.0.1:0 -gateway-addr 127.0.0.1:0 >"$dir/events" 2>"$dir/log" &
pid=$!

# The samples are {"sample":1,...} to {"sample":3,...}, quoted in msgBody.
samples() { grep -o 'sample\\":[0-9]*' "$dir/events" | sort -u | wc -l; }
ready=
for _ in $(seq 1 600); do # 60 s at most
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$dir/log" >&2
    fail "dev exited before delivering the samples"
  fi
  url=$(sed -n 's/.*msg="serving \/healthz, \/readyz and \/metrics" url=\([^ ]*\).*/\1/p' "$dir/log")
  if [[ -n "$url" && $(samples) -ge 3 ]] && curl -fsS "$url/readyz" >/dev/null 2>&1; then
    ready=yes
    break
  fi
  sleep 0.1
done
if [[ -z "$ready" ]]; then
  cat "$dir/log" >&2
  fail "after 60 s, $(samples) of the 3 samples delivered, /readyz at ${url:-no address yet}"
fi

kill -INT "$pid"
status=0
wait "$pid" || status=$?
pid=
if [[ $status -ne 0 ]]; then
  cat "$dir/log" >&2
  fail "dev exited with status $status after Ctrl-C, want 0"
fi
echo "dev: 3 samples delivered, /readyz 200 at $url, clean exit on Ctrl-C"
