#!/usr/bin/env bash
# The team remote cache: a local REAPI server (BuildGrid: CAS on disk, action cache in Redis with an
# append-only file), bound to loopback. Everything it stores lives under one data directory, so a
# stopped and restarted server still serves earlier builds.
#
#   cache/server.sh setup     install what the server needs (venv with BuildGrid, redis-server); idempotent
#   cache/server.sh start     setup, then start Redis and BuildGrid; waits until the gRPC port answers
#   cache/server.sh stop      stop both (by the pids they recorded); the data stays
#   cache/server.sh status    print whether it runs and where (exit 0 if it runs, 3 if not)
#   cache/server.sh restart   stop, then start
#   cache/server.sh address   print the address to give VLLM_BUNDLER_REMOTE_CACHE
#   cache/server.sh verify    check that every recorded action is served (prints {"actions": N, "served": N, ...})
#   cache/server.sh lint      check the generated BuildGrid configuration
#
# Settings (environment):
#   BUNDLER_CACHE_PORT        gRPC port (default 50051)
#   BUNDLER_CACHE_REDIS_PORT  Redis port (default 56379), also loopback only
#   BUNDLER_CACHE_HOST        address to bind (default 127.0.0.1)
#   BUNDLER_CACHE_DATA        data directory (default ${XDG_DATA_HOME:-~/.local/share}/vllm-bundler/team-cache)
#   VLLM_BUNDLER_CACHE        where the BuildGrid venv goes (default ~/.cache/vllm-bundler, as ./pants)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILDGRID_VERSION="0.8.16"  # needs Python >= 3.12
PORT="${BUNDLER_CACHE_PORT:-50051}"
REDIS_PORT="${BUNDLER_CACHE_REDIS_PORT:-56379}"
HOST="${BUNDLER_CACHE_HOST:-127.0.0.1}"
DATA="${BUNDLER_CACHE_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/vllm-bundler/team-cache}"
TOOLS="${VLLM_BUNDLER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vllm-bundler}"
VENV="$TOOLS/buildgrid-$BUILDGRID_VERSION"
RUN="$DATA/run"  # pid files, logs and the generated config

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
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

write_config() {
  sed -e "s|@HOST@|$HOST|g" -e "s|@PORT@|$PORT|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" -e "s|@CAS@|$DATA/cas|g" \
    "$HERE/buildgrid.yml.in" >"$RUN/buildgrid.yml"
}

start() {
  setup
  mkdir -p "$DATA/cas" "$DATA/redis" "$RUN"
  if ! alive "$RUN/redis.pid"; then
    port_open "$REDIS_PORT" && die "port $REDIS_PORT on $HOST is taken by another program; set BUNDLER_CACHE_REDIS_PORT"
    # Persistence: append-only file (fsync every second) plus RDB snapshots, both in $DATA/redis.
    redis-server --bind "$HOST" --port "$REDIS_PORT" --protected-mode yes --dir "$DATA/redis" \
      --appendonly yes --appendfsync everysec --save "60 1" \
      --daemonize yes --pidfile "$RUN/redis.pid" --logfile "$RUN/redis.log"
    for _ in $(seq 100); do port_open "$REDIS_PORT" && break; sleep 0.1; done
    port_open "$REDIS_PORT" || { tail -n 20 "$RUN/redis.log" >&2; die "redis-server did not start"; }
  fi
  if alive "$RUN/bgd.pid"; then log "already running (pid $(cat "$RUN/bgd.pid")) on grpc://$HOST:$PORT"; return 0; fi
  port_open "$PORT" && die "port $PORT on $HOST is taken by another program; set BUNDLER_CACHE_PORT"
  write_config
  setsid nohup "$VENV/bin/bgd" server start --pid-file "$RUN/bgd.pid" "$RUN/buildgrid.yml" >"$RUN/bgd.log" 2>&1 </dev/null &
  echo $! >"$RUN/bgd.pid"
  for _ in $(seq 1200); do  # about 3.5 s on an idle machine; allow for a loaded one
    port_open "$PORT" && { log "serving grpc://$HOST:$PORT (data: $DATA)"; return 0; }
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

status() {
  if alive "$RUN/bgd.pid" && port_open "$PORT"; then
    echo "running: grpc://$HOST:$PORT (BuildGrid pid $(cat "$RUN/bgd.pid"), Redis pid $(cat "$RUN/redis.pid" 2>/dev/null || echo '?') on port $REDIS_PORT, data $DATA)"
  else
    echo "not running (data $DATA)"; return 3
  fi
}

case "${1:-}" in
  setup) setup ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  address) echo "grpc://$HOST:$PORT" ;;
  verify) status >/dev/null || die "not running"; "$VENV/bin/python" "$HERE/verify.py" "$HOST:$PORT" "$HOST" "$REDIS_PORT" ;;
  lint) setup; mkdir -p "$RUN"; write_config; "$VENV/bin/bgd" server lint "$RUN/buildgrid.yml" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2 ;;
esac
