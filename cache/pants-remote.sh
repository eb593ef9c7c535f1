# Sourced by ./pants (the "remote cache" region). Turns Pants' remote cache on when
# VLLM_BUNDLER_REMOTE_CACHE names a server, e.g. grpc://127.0.0.1:50051 (cache/server.sh address).
#   VLLM_BUNDLER_REMOTE_CACHE        unset, empty or "off": no remote cache (the default)
#   VLLM_BUNDLER_REMOTE_CACHE_WRITE  "0" to only read (default: read and write)
# An unreachable server is not an error: one warning, and the build runs from local work only.
if [[ -n "${VLLM_BUNDLER_REMOTE_CACHE:-}" && "${VLLM_BUNDLER_REMOTE_CACHE}" != "off" && "${1:-}" != "--toolchain-python" ]]; then
  _rc_addr="${VLLM_BUNDLER_REMOTE_CACHE}"
  [[ "$_rc_addr" == *://* ]] || _rc_addr="grpc://$_rc_addr"
  _rc_hostport="${_rc_addr#*://}"; _rc_hostport="${_rc_hostport%%/*}"
  _rc_host="${_rc_hostport%:*}"; _rc_port="${_rc_hostport##*:}"
  if [[ "$_rc_addr" != grpc://* || "$_rc_host" == "$_rc_hostport" || ! "$_rc_port" =~ ^[0-9]+$ ]]; then
    die "VLLM_BUNDLER_REMOTE_CACHE='$VLLM_BUNDLER_REMOTE_CACHE' is not grpc://HOST:PORT (or 'off')"
  fi
  if timeout 3 bash -c "exec 3<>'/dev/tcp/$_rc_host/$_rc_port'" 2>/dev/null; then
    export PANTS_REMOTE_STORE_ADDRESS="$_rc_addr"
    export PANTS_REMOTE_CACHE_READ=true
    if [[ "${VLLM_BUNDLER_REMOTE_CACHE_WRITE:-1}" == 0 ]]; then export PANTS_REMOTE_CACHE_WRITE=false; else export PANTS_REMOTE_CACHE_WRITE=true; fi
    export PANTS_REMOTE_INSTANCE_NAME="${PANTS_REMOTE_INSTANCE_NAME:-}"
    # Should the server fail during the build: one warning per kind (read, write), and the build goes on.
    export PANTS_REMOTE_CACHE_WARNINGS="${PANTS_REMOTE_CACHE_WARNINGS:-first_only}"
  else
    echo "pants launcher: WARNING: remote cache $_rc_addr is unreachable; building without it (local work and local cache only). Start it with cache/server.sh start, or unset VLLM_BUNDLER_REMOTE_CACHE." >&2
  fi
  unset _rc_addr _rc_hostport _rc_host _rc_port
fi
