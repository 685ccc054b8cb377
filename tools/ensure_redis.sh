#!/usr/bin/env bash
# Make sure a Redis answers on 127.0.0.1:6379 (tests use it for the queue, ledger and history):
# start one if none answers, installing redis-server with apt-get if needed.  Exits non-zero with
# the reason on stderr when it cannot, so `make test` stops instead of running without Redis.
set -euo pipefail
fail() { echo "tools/ensure_redis.sh: $*" >&2; exit 1; }
answers() {
  if command -v redis-cli >/dev/null 2>&1; then redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG
  else (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null
  fi
}
if answers; then exit 0; fi
if ! command -v redis-server >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 \
    || fail "no Redis answers on 127.0.0.1:6379 and redis-server is not installed; install Redis 6+ and start it"
  echo "installing redis-server with apt-get" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log="$(mktemp)"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools; } \
    >"$log" 2>&1 || fail "apt-get install redis-server failed: $(tail -5 "$log")"
  rm -f "$log"
fi
out="$(redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no 2>&1)" \
  || fail "redis-server did not start: $out"
for _ in $(seq 1 50); do answers && exit 0; sleep 0.1; done
fail "redis-server started but nothing answers PING on 127.0.0.1:6379 (port taken by something else?): $out"
