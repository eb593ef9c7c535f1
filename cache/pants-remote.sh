# Sourced by ./pants (the "remote cache" region). Turns Pants' remote cache on when
# VLLM_BUNDLER_REMOTE_CACHE names a server, e.g. grpc://127.0.0.1:50051 (cache/server.sh address).
#   VLLM_BUNDLER_REMOTE_CACHE             unset, empty or "off": no remote cache (the default);
#                                         grpc://HOST:PORT, or grpcs://HOST:PORT for a server with TLS
#   VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE  a file holding a write token (cache/server.sh issue-token):
#                                         with it, results this build computes are also written.
#                                         Without it, the cache is only read (anonymously).
#   VLLM_BUNDLER_REMOTE_CACHE_WRITE       "0": only read, even with a token
#   VLLM_BUNDLER_REMOTE_CACHE_CA          grpcs only: PEM file of the CA that signed the server's
#                                         certificate (default: the system's CA certificates)
# The server's instance "" serves anonymous reads; "writers" needs the token (cache/buildgrid-acl.yml).
# An unreachable server is not an error: one warning, and the build runs from local work only.
if [[ -n "${VLLM_BUNDLER_REMOTE_CACHE:-}" && "${VLLM_BUNDLER_REMOTE_CACHE}" != "off" && "${1:-}" != "--toolchain-python" ]]; then
  _rc_addr="${VLLM_BUNDLER_REMOTE_CACHE}"
  [[ "$_rc_addr" == *://* ]] || _rc_addr="grpc://$_rc_addr"
  _rc_hostport="${_rc_addr#*://}"; _rc_hostport="${_rc_hostport%%/*}"
  _rc_host="${_rc_hostport%:*}"; _rc_port="${_rc_hostport##*:}"
  if [[ ( "$_rc_addr" != grpc://* && "$_rc_addr" != grpcs://* ) || "$_rc_host" == "$_rc_hostport" || ! "$_rc_port" =~ ^[0-9]+$ ]]; then
    die "VLLM_BUNDLER_REMOTE_CACHE='$VLLM_BUNDLER_REMOTE_CACHE' is not grpc://HOST:PORT, grpcs://HOST:PORT (or 'off')"
  fi
  _rc_token=""
  if [[ -n "${VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE:-}" && "${VLLM_BUNDLER_REMOTE_CACHE_WRITE:-1}" != 0 ]]; then
    [[ -f "$VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE" && -r "$VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE" && -s "$VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE" ]] \
      || die "VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE='$VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE' is not a readable, non-empty file (a token from cache/server.sh issue-token --writer NAME); unset it to only read"
    _rc_token="$(realpath "$VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE")"
  elif [[ "${VLLM_BUNDLER_REMOTE_CACHE_WRITE:-}" == 1 ]]; then
    echo "pants launcher: WARNING: VLLM_BUNDLER_REMOTE_CACHE_WRITE=1 but no VLLM_BUNDLER_REMOTE_CACHE_TOKEN_FILE: writing to the team cache needs a token (cache/server.sh issue-token); reading only." >&2
  fi
  if [[ -n "${VLLM_BUNDLER_REMOTE_CACHE_CA:-}" ]]; then
    [[ "$_rc_addr" == grpcs://* ]] || die "VLLM_BUNDLER_REMOTE_CACHE_CA is set but VLLM_BUNDLER_REMOTE_CACHE='$_rc_addr' is not grpcs://"
    [[ -f "$VLLM_BUNDLER_REMOTE_CACHE_CA" && -r "$VLLM_BUNDLER_REMOTE_CACHE_CA" ]] \
      || die "VLLM_BUNDLER_REMOTE_CACHE_CA='$VLLM_BUNDLER_REMOTE_CACHE_CA' is not a readable PEM file"
  fi
  if timeout 3 bash -c "exec 3<>'/dev/tcp/$_rc_host/$_rc_port'" 2>/dev/null; then
    export PANTS_REMOTE_STORE_ADDRESS="$_rc_addr"
    export PANTS_REMOTE_CACHE_READ=true
    if [[ -n "$_rc_token" ]]; then
      # Pants sends the file's content as "authorization: Bearer <token>" on every store and cache RPC.
      export PANTS_REMOTE_CACHE_WRITE=true PANTS_REMOTE_INSTANCE_NAME=writers PANTS_REMOTE_OAUTH_BEARER_TOKEN_PATH="$_rc_token"
    else
      export PANTS_REMOTE_CACHE_WRITE=false PANTS_REMOTE_INSTANCE_NAME=""
      unset PANTS_REMOTE_OAUTH_BEARER_TOKEN_PATH
    fi
    if [[ -n "${VLLM_BUNDLER_REMOTE_CACHE_CA:-}" ]]; then export PANTS_REMOTE_CA_CERTS_PATH="$(realpath "$VLLM_BUNDLER_REMOTE_CACHE_CA")"; fi
    # Should the server fail during the build: one warning per kind (read, write), and the build goes on.
    export PANTS_REMOTE_CACHE_WARNINGS="${PANTS_REMOTE_CACHE_WARNINGS:-first_only}"
  else
    echo "pants launcher: WARNING: remote cache $_rc_addr is unreachable; building without it (local work and local cache only). Start it with cache/server.sh start, or unset VLLM_BUNDLER_REMOTE_CACHE." >&2
  fi
  unset _rc_addr _rc_hostport _rc_host _rc_port _rc_token
fi
