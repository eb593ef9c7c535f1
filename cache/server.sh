#!/usr/bin/env bash
# The team remote cache: a local REAPI server (BuildGrid: CAS on disk, action cache in Redis with an
# append-only file), bound to loopback by default. Everything it stores lives under one data directory,
# so a stopped and restarted server still serves earlier builds. Anyone who reaches the port may read
# (instance ""); writing needs a token this script issues (instance "writers"; see cache/README.md).
#
#   cache/server.sh setup     install what the server needs (venv with BuildGrid, redis-server); idempotent
#   cache/server.sh start     setup, then start Redis and BuildGrid; waits until the gRPC port answers.
#                             The first start generates the token-signing secret (<data>/jwt-secret, 0600)
#   cache/server.sh stop      stop both (by the pids they recorded); the data stays
#   cache/server.sh status    print whether BuildGrid and Redis both run (exit 0), one is down (exit 1,
#                             naming it), or neither runs (exit 3)
#   cache/server.sh restart   stop, then start
#   cache/server.sh address   print the address to give VLLM_BUNDLER_REMOTE_CACHE
#   cache/server.sh issue-token --writer NAME [--days N]
#                             print a write token for NAME (default: valid 365 days); give it to the
#                             writer as a file named by VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE
#   cache/server.sh verify    check that every recorded action is served (prints {"actions": N, "served": N, ...});
#                             any problem is one line on stderr and exit 1
#   cache/server.sh lint      check the generated BuildGrid configuration
#   cache/server.sh python    run BuildGrid's Python (its gRPC client and REAPI protos), with the arguments given
#
# Settings (environment):
#   BUNDLER_CACHE_PORT        gRPC port (default 50051)
#   BUNDLER_CACHE_REDIS_PORT  Redis port (default 56379), always bound to 127.0.0.1
#   BUNDLER_CACHE_HOST        address to bind (default 127.0.0.1)
#   BUNDLER_CACHE_TLS_CERT    with BUNDLER_CACHE_TLS_KEY: serve TLS (grpcs://) with this PEM certificate chain
#   BUNDLER_CACHE_TLS_KEY     ... and this PEM private key
#   BUNDLER_CACHE_TLS_CA      PEM file of the CA that `verify` trusts (default: BUNDLER_CACHE_TLS_CERT itself,
#                             which works when that file is the full chain, ending in the CA)
#   BUNDLER_CACHE_DATA        data directory (default ${XDG_DATA_HOME:-~/.local/share}/vllm-bundler/team-cache)
#   VLLM_BUNDLER_CACHE        where the BuildGrid venv goes (default ~/.cache/vllm-bundler, as ./pants)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILDGRID_VERSION="0.8.16"  # needs Python >= 3.12
PORT="${BUNDLER_CACHE_PORT:-50051}"
REDIS_PORT="${BUNDLER_CACHE_REDIS_PORT:-56379}"
HOST="${BUNDLER_CACHE_HOST:-127.0.0.1}"
REDIS_HOST=127.0.0.1  # only BuildGrid talks to Redis
TLS_CERT="${BUNDLER_CACHE_TLS_CERT:-}"
TLS_KEY="${BUNDLER_CACHE_TLS_KEY:-}"
TLS_CA="${BUNDLER_CACHE_TLS_CA:-}"
DATA="${BUNDLER_CACHE_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/vllm-bundler/team-cache}"
TOOLS="${VLLM_BUNDLER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm-bundler}"
VENV="$TOOLS/buildgrid-$BUILDGRID_VERSION"
RUN="$DATA/run"  # pid files, logs and the generated config
SECRET="$DATA/jwt-secret"  # signs the writers' tokens; never leaves the data directory
AUDIENCE="vllm-bundler-cache"  # the tokens' "aud", as buildgrid.yml.in's audience

die() { echo "cache/server.sh: $*" >&2; exit 1; }
log() { echo "cache/server.sh: $*" >&2; }

find_python() {  # a Python >= 3.12 for BuildGrid: on PATH, then under pyenv
  local cand root v
  for v in 3.12 3.13; do
    # pyenv shims exist for versions that are not selected: check that the interpreter really runs
    if command -v "python$v" >/dev/null 2>&1 && "python$v" -c 'import sys' >/dev/null 2>&1; then command -v "python$v"; return; fi
  done
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for cand in "$root"/versions/3.12.*/bin/python3.12 "$root"/versions/3.13.*/bin/python3.13; do
    [[ -x "$cand" ]] && { echo "$cand"; return; }
  done
}

setup() {
  mkdir -p "$TOOLS"
  exec 8>"$TOOLS/.buildgrid.lock"
  flock 8
  if [[ ! -f "$VENV/.ready" ]]; then
    local py; py="$(find_python)"
    [[ -n "$py" ]] || die "BuildGrid $BUILDGRID_VERSION needs Python 3.12 or 3.13; none on PATH or under pyenv (try 'pyenv install 3.12')"
    log "installing BuildGrid $BUILDGRID_VERSION into $VENV (first run only)"
    rm -rf "$VENV"
    "$py" -m venv "$VENV" >"$TOOLS/buildgrid-setup.log" 2>&1 || { cat "$TOOLS/buildgrid-setup.log" >&2; die "venv failed"; }
    "$VENV/bin/pip" install --disable-pip-version-check "buildgrid[redis]==$BUILDGRID_VERSION" >>"$TOOLS/buildgrid-setup.log" 2>&1 \
      || { tail -n 30 "$TOOLS/buildgrid-setup.log" >&2; die "pip install buildgrid failed (log: $TOOLS/buildgrid-setup.log)"; }
    touch "$VENV/.ready"
  fi
  if ! command -v redis-server >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and there is no apt-get: install Redis (>= 5) and run again"
    local sudo=""; [[ "$(id -u)" == 0 ]] || sudo="sudo"
    log "installing redis-server with apt-get (first run only)"
    { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends redis-server; } \
      >"$TOOLS/redis-setup.log" 2>&1 || { tail -n 30 "$TOOLS/redis-setup.log" >&2; die "apt-get install redis-server failed"; }
  fi
  flock -u 8
}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/${2:-$HOST}/$1") 2>/dev/null; }
redis_pong() {  # Redis answers PING (not only: something listens on its port)
  local reply
  exec 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 reply <&3 || reply=""
  exec 3<&- 3>&-
  [[ "$reply" == "+PONG"* ]]
}
tls() { [[ -n "$TLS_CERT" || -n "$TLS_KEY" ]]; }
scheme() { if tls; then echo grpcs; else echo grpc; fi; }

check_tls() {
  tls || return 0
  [[ -n "$TLS_CERT" && -n "$TLS_KEY" ]] || die "TLS needs both BUNDLER_CACHE_TLS_CERT and BUNDLER_CACHE_TLS_KEY"
  [[ -r "$TLS_CERT" ]] || die "BUNDLER_CACHE_TLS_CERT=$TLS_CERT is not a readable file"
  [[ -r "$TLS_KEY" ]] || die "BUNDLER_CACHE_TLS_KEY=$TLS_KEY is not a readable file"
  TLS_CERT="$(realpath "$TLS_CERT")"; TLS_KEY="$(realpath "$TLS_KEY")"
}

ensure_secret() {  # the HS256 key that signs write tokens: generated once, readable by this user only
  [[ -s "$SECRET" ]] && { chmod 600 "$SECRET"; return 0; }
  mkdir -p "$DATA"
  (umask 077 && "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$SECRET.tmp" && mv "$SECRET.tmp" "$SECRET")
  log "generated the token-signing secret $SECRET (mode 0600; deleting it and restarting revokes every token)"
}

write_config() {
  local tls_sed=(-e '/^#TLS /d' -e 's|  # @PLAIN@$||')
  tls && tls_sed=(-e '/# @PLAIN@$/d' -e 's|^#TLS ||')
  (umask 077 && cp "$HERE/buildgrid-acl.yml" "$RUN/acl.yml")
  sed "${tls_sed[@]}" -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" -e "s|@REDIS_HOST@|$REDIS_HOST|g" \
    -e "s|@REDIS_PORT@|$REDIS_PORT|g" -e "s|@CAS@|$DATA/cas|g" -e "s|@SECRET@|$SECRET|g" -e "s|@ACL@|$RUN/acl.yml|g" \
    -e "s|@TLS_CERT@|$TLS_CERT|g" -e "s|@TLS_KEY@|$TLS_KEY|g" "$HERE/buildgrid.yml.in" >"$RUN/buildgrid.yml"
}

start() {
  setup
  check_tls
  mkdir -p "$DATA/cas" "$DATA/redis" "$RUN"
  chmod 700 "$DATA"
  ensure_secret
  if ! alive "$RUN/redis.pid"; then
    port_open "$REDIS_PORT" "$REDIS_HOST" && die "port $REDIS_PORT on $REDIS_HOST is taken by another program; set BUNDLER_CACHE_REDIS_PORT"
    # Persistence: append-only file (fsync every second) plus RDB snapshots, both in $DATA/redis.
    redis-server --bind "$REDIS_HOST" --port "$REDIS_PORT" --protected-mode yes --dir "$DATA/redis" \
      --appendonly yes --appendfsync everysec --save "60 1" \
      --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log"
    for _ in $(seq 100); do redis_pong && break; sleep 0.1; done
    redis_pong || { tail -n 20 "$RUN/redis.log" >&2; die "redis-server did not start"; }
  fi
  if alive "$RUN/bgd.pid"; then log "already running (pid $(cat "$RUN/bgd.pid")) on $(scheme)://$HOST:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT on $HOST is taken by another program; set BUNDLER_CACHE_PORT"
  if ! tls && [[ "$HOST" != 127.* && "$HOST" != localhost && "$HOST" != ::1 ]]; then
    log "WARNING: serving on $HOST without TLS: write tokens and cached results cross the network in clear text (set BUNDLER_CACHE_TLS_CERT and BUNDLER_CACHE_TLS_KEY)"
  fi
  write_config
  setsid nohup "$VENV/bin/bgd" server start --pid-file "$RUN/bgd.pid" "$RUN/buildgrid.yml" >"$RUN/bgd.log" 2>&1 </dev/null &
  echo $! >"$RUN/bgd.pid"
  for _ in $(seq 1200); do  # about 3.5 s on an idle machine; allow for a loaded one
    port_open "$PORT" && { log "serving $(scheme)://$HOST:$PORT (data: $DATA)"; return 0; }
    alive "$RUN/bgd.pid" || break
    sleep 0.1
  done
  tail -n 30 "$RUN/bgd.log" >&2
  stop_pid "$RUN/bgd.pid" bgd
  die "BuildGrid did not start (log: $RUN/bgd.log)"
}

stop_pid() {  # stop_pid <pidfile> <name>: TERM, wait up to 15 s, then KILL
  local f="$1" pid
  [[ -f "$f" ]] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "$2 (pid $pid) did not stop on TERM; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$f"
}

stop() {
  stop_pid "$RUN/bgd.pid" BuildGrid
  stop_pid "$RUN/redis.pid" redis-server  # TERM: Redis writes its snapshot and AOF before exiting
  log "stopped (data kept in $DATA)"
}

status() {  # both processes must run and answer: BuildGrid (gRPC port) and Redis (PING)
  local bgd=up redis=up
  alive "$RUN/bgd.pid" && port_open "$PORT" || bgd=down
  alive "$RUN/redis.pid" && redis_pong || redis=down
  if [[ $bgd == up && $redis == up ]]; then
    echo "running: $(scheme)://$HOST:$PORT (BuildGrid pid $(cat "$RUN/bgd.pid"), Redis pid $(cat "$RUN/redis.pid") on $REDIS_HOST:$REDIS_PORT, data $DATA)"
  elif [[ $bgd == down && $redis == down ]]; then
    echo "not running (data $DATA)"; return 3
  elif [[ $redis == down ]]; then
    echo "broken: Redis is down (no answer on $REDIS_HOST:$REDIS_PORT; log $RUN/redis.log) while BuildGrid runs on $(scheme)://$HOST:$PORT: cached results cannot be read or written; run cache/server.sh restart"
    return 1
  else
    echo "broken: BuildGrid is down (no answer on $(scheme)://$HOST:$PORT; log $RUN/bgd.log) while Redis runs on $REDIS_HOST:$REDIS_PORT; run cache/server.sh restart"
    return 1
  fi
}

issue_token() {  # issue_token --writer NAME [--days N]: print a signed write token
  local name="" days=365
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --writer) name="${2:-}"; shift 2 || die "--writer needs a NAME" ;;
      --days) days="${2:-}"; shift 2 || die "--days needs a number" ;;
      *) die "issue-token: unknown argument '$1' (usage: cache/server.sh issue-token --writer NAME [--days N])" ;;
    esac
  done
  [[ "$name" =~ ^[A-Za-z0-9._@-]+$ ]] || die "issue-token needs --writer NAME (letters, digits, . _ @ -), e.g. --writer ci"
  [[ "$days" =~ ^[0-9]+$ && "$days" -ge 1 ]] || die "--days must be a whole number of days >= 1, not '$days'"
  setup
  ensure_secret
  "$VENV/bin/python" - "$SECRET" "writer:$name" "$AUDIENCE" "$days" "$DATA/tokens.log" <<'PY'
import datetime, secrets, sys, time
import jwt
secret_file, subject, audience, days, log = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
secret = open(secret_file, encoding="utf-8").read().strip()  # as BuildGrid reads it
now = int(time.time())
claims = {"sub": subject, "aud": audience, "iat": now, "exp": now + days * 86400, "jti": secrets.token_hex(8)}
print(jwt.encode(claims, secret, algorithm="HS256"))
with open(log, "a", encoding="utf-8") as f:  # who holds a token, not the token
    expires = datetime.datetime.fromtimestamp(claims["exp"], datetime.timezone.utc).isoformat()
    f.write(f"{datetime.datetime.now(datetime.timezone.utc).isoformat()} issued {subject} jti={claims['jti']} expires={expires}\n")
PY
}

case "${1:-}" in
  setup) setup ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  address) echo "$(scheme)://$HOST:$PORT" ;;
  issue-token) shift; issue_token "$@" ;;
  verify)
    check_tls
    line="$(status)" || die "verify: ${line}"
    dial="$HOST"; [[ "$dial" == 0.0.0.0 ]] && dial=127.0.0.1
    "$VENV/bin/python" "$HERE/verify.py" "$dial:$PORT" "$REDIS_HOST" "$REDIS_PORT" "$TLS_CERT" "${TLS_CA:-$TLS_CERT}" ;;
  lint) setup; check_tls; mkdir -p "$RUN"; ensure_secret; write_config; "$VENV/bin/bgd" server lint "$RUN/buildgrid.yml" ;;
  python) shift; setup; exec "$VENV/bin/python" "$@" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
