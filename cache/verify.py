"""Check that the running team cache serves every action it has recorded (run by `cache/server.sh verify`
with BuildGrid's own interpreter). For each action-cache entry in Redis: GetActionResult over gRPC, then
FindMissingBlobs for everything the result points to (stdout, stderr, output files, output trees). It
asks as a reader does: instance "", no token.
Prints one JSON line: {"actions": N, "served": N, "missing_blobs": 0}; exits 1 unless all are served.
Any problem (Redis or BuildGrid not answering, a refused request) is one line on stderr, exit 1."""

import json
import sys

import grpc
import redis
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc

TIMEOUT = 30


def _channel(address: str, tls_cert: str, tls_ca: str) -> grpc.Channel:
    if not tls_cert:
        return grpc.insecure_channel(address)
    # TLS: trust tls_ca (by default the server's certificate file: its full chain, or a self-signed
    # certificate), and check the name the certificate was issued for (its first DNS name), not the
    # address dialled.
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(open(tls_cert, "rb").read())  # the first one: the server's own
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    options = [("grpc.ssl_target_name_override", names[0])] if names else []
    roots = open(tls_ca, "rb").read()
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=roots), options=options)


def main(address: str, redis_host: str, redis_port: int, tls_cert: str = "", tls_ca: str = "") -> int:
    try:
        keys = sorted(k.decode() for k in redis.Redis(host=redis_host, port=redis_port).scan_iter("action-cache.*"))
    except redis.RedisError as e:
        print(f"cache/server.sh verify: Redis on {redis_host}:{redis_port} does not answer ({type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else 'no detail'}); run cache/server.sh status", file=sys.stderr)
        return 1
    channel = _channel(address, tls_cert, tls_ca or tls_cert)
    ac, cas = re_grpc.ActionCacheStub(channel), re_grpc.ContentAddressableStorageStub(channel)
    served, missing, failed = 0, 0, {}
    for key in keys:
        digest_hash, _, size = key.removeprefix("action-cache.").rpartition("_")
        digest = re_pb2.Digest(hash=digest_hash, size_bytes=int(size))
        try:
            result = ac.GetActionResult(re_pb2.GetActionResultRequest(instance_name="", action_digest=digest), timeout=TIMEOUT)
            blobs = [d for d in (result.stdout_digest, result.stderr_digest) if d.hash]
            blobs += [f.digest for f in result.output_files] + [d.tree_digest for d in result.output_directories]
            found = cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(instance_name="", blob_digests=blobs), timeout=TIMEOUT)
        except grpc.RpcError as e:
            failed.setdefault(f"{e.code().name}: {(e.details() or '').splitlines()[0] if e.details() else ''}", []).append(key)
            continue
        missing += len(found.missing_blob_digests)
        served += 1
    report = {"actions": len(keys), "served": served, "missing_blobs": missing}
    print(json.dumps(report))
    if failed:
        reasons = "; ".join(f"{len(v)} x {reason}" for reason, v in sorted(failed.items()))
        print(f"cache/server.sh verify: {len(keys) - served} of {len(keys)} actions not served ({reasons})", file=sys.stderr)
    return 0 if served == len(keys) and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:6]))
