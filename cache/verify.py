"""Check that the running team cache serves every action it has recorded (run by `cache/server.sh verify`
with BuildGrid's own interpreter). For each action-cache entry in Redis: GetActionResult over gRPC, then
FindMissingBlobs for everything the result points to (stdout, stderr, output files, output trees).
Prints one JSON line: {"actions": N, "served": N, "missing_blobs": 0}; exits 1 unless all are served."""

import json
import sys

import grpc
import redis
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2 as re_pb2
from buildgrid._protos.build.bazel.remote.execution.v2 import remote_execution_pb2_grpc as re_grpc


def main(address: str, redis_host: str, redis_port: int) -> int:
    keys = sorted(k.decode() for k in redis.Redis(host=redis_host, port=redis_port).scan_iter("action-cache.*"))
    channel = grpc.insecure_channel(address)
    ac, cas = re_grpc.ActionCacheStub(channel), re_grpc.ContentAddressableStorageStub(channel)
    served, missing = 0, 0
    for key in keys:
        digest_hash, _, size = key.removeprefix("action-cache.").rpartition("_")
        digest = re_pb2.Digest(hash=digest_hash, size_bytes=int(size))
        try:
            result = ac.GetActionResult(re_pb2.GetActionResultRequest(instance_name="", action_digest=digest), timeout=30)
        except grpc.RpcError as e:
            print(f"{key}: {e.code().name}", file=sys.stderr)
            continue
        blobs = [d for d in (result.stdout_digest, result.stderr_digest) if d.hash]
        blobs += [f.digest for f in result.output_files] + [d.tree_digest for d in result.output_directories]
        found = cas.FindMissingBlobs(re_pb2.FindMissingBlobsRequest(instance_name="", blob_digests=blobs), timeout=30)
        missing += len(found.missing_blob_digests)
        served += 1
    print(json.dumps({"actions": len(keys), "served": served, "missing_blobs": missing}))
    return 0 if served == len(keys) and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
