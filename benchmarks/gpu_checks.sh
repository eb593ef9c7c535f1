#!/usr/bin/env bash
# Every GPU check, on a machine with a CUDA GPU (the `device` H100), on bundles built beforehand here:
#   ./pants --tag=-zoo package targets:: targets/vllm_0_33_0::      # bundles_out/ (git-ignored: carry it to the GPU machine)
#   PYTHON=$(./pants --toolchain-python) benchmarks/gpu_checks.sh a4 -    # here: the A4 sections the ops check builds
#   benchmarks/gpu_checks.sh ops|examples|triton OUT_DIR [BUNDLE...]        # there
# a4:       bundles_out/gpu/a4_<version>/: one A4 section per vLLM version with every op tests/gpu checks
# ops:      tests/gpu/test_cuda_ops_gpu.py over those sections, results OUT_DIR/cuda-ops.json
# examples: tools/run_bundle.py on each bundle (default: the 0.26.0 suite), cold (empty bundle cache, all in
#           parallel) then warm (one at a time), small and full size; results OUT_DIR/examples-*.json
# triton:   tests/gpu/test_triton_kernels_gpu.py over the bundles, results OUT_DIR/triton-kernels.json
# parity:   tools/parity.py on the suite's decoder layers (or the BUNDLEs), against transformers' layers with the
#           same weights, one process per case; PARITY_CASES="prefill:32 decode:2x64" overrides the cases;
#           results OUT_DIR/parity-<bundle>-<case>.json
# zoo:      benchmarks/zoo_gpu.py on a zoo bundle folder (default bundles_out/zoo/0.26.0), BUDGET_S seconds, then
#           tools/parity.py on each bundle whose example ran: ZOO_PARITY cases (default "prefill:32,decode:2x64";
#           ZOO_PARITY= turns it off)
# speed:    benchmarks/layer_speed.py on the suite's decoder layers (SPEED_ARGS, default --quick), BUDGET_S seconds
# moe:      `<bundle>.py tune-moe` on the suite's fused-MoE bundles (or the BUNDLEs; default fused_experts, Qwen3-30B-A3B's
#           shape, and Qwen3MoeDecoderLayer, Qwen3-Coder-480B's), BUDGET_S seconds (default 420) shared equally,
#           MOE_BATCH_SIZES (default 1,8,64,256,1024,4096); logs OUT_DIR/tune-moe-<bundle>.log, files OUT_DIR/moe-configs/
# attention: benchmarks/attention_speed.py on the function bundles of targets/attention_kernels (bundles_out/
#           attention_kernels/), prefill 512, 4096, 32768 tokens against SDPA; ATTN_LAUNCH="64:64:4:2 ..."
#           (BLOCK_M:TILE:WARPS:STAGES) times the unified kernel's prefill launch with those constants too;
#           results OUT_DIR/attention-speed.json
# tune-attention: `<bundle>.py tune-attention` on the suite's decoder layers (or the BUNDLEs), BUDGET_S seconds (default
#           240) shared equally, ATTN_TOKENS (default 512,4096,32768); logs OUT_DIR/tune-attention-<bundle>.log, files
#           OUT_DIR/attention-configs/ (what bundler_lib/example/attention_configs.py ships is measured so)
# cold:     the first `run --small` of a bundle (default bundles_out/Qwen3MoeDecoderLayer.py) in empty bundle, Triton
#           and inductor caches (its CUDA ops and Triton kernels built from nothing), then the same run warm;
#           OUT_DIR/cold-build.txt (the logs beside it name each CUDA unit's compile seconds: the rest is Triton and torch)
# profile:  `<bundle>.py bench --profile 3` on the suite's decoder layers (or the BUNDLEs) at PROFILE_SIZES (default
#           prefill:4096 prefill:32768 decode:64x4096): where each layer's GPU time goes, kernel by kernel;
#           OUT_DIR/profile-<bundle>-<size>.json
# PACK=FILE.tgz packs OUT_DIR into one archive at the end (the device tool brings back a limited number of files)
set -u
phase=$1; out=$2; shift 2
py=${PYTHON:-python}
if [ "$phase" = a4 ]; then
  exec $py - <<'PY'
import json, sys
from pathlib import Path
sys.path[:0] = [".", "tests"]
from bundler_lib import collect_cuda
from conftest import vllm_tree
from gpu.conftest import TARGET_OPS
for v in ("0.26.0", "0.33.0"):
    d = Path(f"bundles_out/gpu/a4_{v}"); d.mkdir(parents=True, exist_ok=True)
    (d / "A1.graph.json").write_text(json.dumps({"status": "ok", "symbol": "X", "cuda_ops": [{"op": o} for o in TARGET_OPS]}))
    collect_cuda.run(tree=vllm_tree(v), graph=d / "A1.graph.json", out=d)
    print(v, d, len(json.loads((d / "A4.manifest.json").read_text())["ops"]), "ops")
PY
fi
mkdir -p "$out"
export VLLM_BUNDLE_GPU_A4="0.26.0=bundles_out/gpu/a4_0.26.0,0.33.0=bundles_out/gpu/a4_0.33.0"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -2
  $py -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} > "$out/env-$phase.txt" 2>&1
# the bundles among these paths: not the KernelBench problems beside them (*.kernelbench.py)
only_bundles() { local b; for b in "$@"; do [[ $b == *.kernelbench.py ]] || echo "$b"; done; }
# a bundle's name in OUT_DIR's files: bundles_out/vllm-0.33.0/X.py -> vllm-0.33.0_X
label() { local r=${1#bundles_out/}; r=${r%.py}; echo "${r//\//_}"; }
case $phase in
  ops)
    VLLM_BUNDLE_GPU_RESULTS="$out/cuda-ops.json" $py -m pytest tests/gpu/test_cuda_ops_gpu.py -q -rfEs \
      > "$out/cuda-ops.log" 2>&1
    echo "ops rc=$?"; tail -5 "$out/cuda-ops.log" ;;
  examples)
    bundles=("$@"); [ ${#bundles[@]} -eq 0 ] && mapfile -t bundles < <(only_bundles bundles_out/*.py)
    export VLLM_BUNDLE_CACHE=$(mktemp -d)
    for b in "${bundles[@]}"; do n=$(label "$b")
      $py tools/run_bundle.py "$b" --json "$out/examples-cold-$n.json" > "$out/examples-cold-$n.log" 2>&1 &
    done; wait
    for b in "${bundles[@]}"; do n=$(label "$b")
      $py tools/run_bundle.py "$b" --json "$out/examples-warm-$n.json" > "$out/examples-warm-$n.log" 2>&1
      $py tools/run_bundle.py "$b" --full --json "$out/examples-full-$n.json" > "$out/examples-full-$n.log" 2>&1
    done
    for f in "$out"/examples-*.json; do echo "$(basename "$f"): $($py -c "import json,sys; d=json.load(open(sys.argv[1])); print(d.get('example'), d.get('import_s'), d.get('example_s', d.get('error', ''))[-300:] if isinstance(d.get('example_s', d.get('error', '')), str) else d.get('example_s'))" "$f")"; done ;;
  triton)
    bundles=("$@"); [ ${#bundles[@]} -eq 0 ] && mapfile -t bundles < <(only_bundles bundles_out/*.py bundles_out/vllm-0.33.0/*.py)
    VLLM_BUNDLE_GPU_BUNDLES=$(IFS=,; echo "${bundles[*]}") VLLM_BUNDLE_GPU_RESULTS="$out/triton-kernels.json" \
    VLLM_BUNDLE_GPU_DEADLINE_S=${DEADLINE_S:-540} $py -m pytest tests/gpu/test_triton_kernels_gpu.py -q -rfEs \
      > "$out/triton-kernels.log" 2>&1
    echo "triton rc=$?"; tail -15 "$out/triton-kernels.log" ;;
  parity)
    bundles=("$@"); [ ${#bundles[@]} -eq 0 ] && bundles=(bundles_out/{Qwen3Moe,Qwen3,Llama}DecoderLayer.py bundles_out/vllm-0.33.0/{Qwen3Moe,Qwen3,Llama}DecoderLayer.py)
    # one process per case: a model-sized MoE layer, its float32 reference and the control fill most of an H100
    export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
    for b in "${bundles[@]}"; do n=$(label "$b")
      for c in ${PARITY_CASES:-prefill:32 prefill:4096 decode:2x64 decode:8x4096}; do
        $py tools/parity.py "$b" --case "$c" --json "$out/parity-$n-${c//[:+]/_}.json" > "$out/parity-$n-${c//[:+]/_}.log" 2>&1
        echo "$n $c rc=$?"; grep "^$(basename "$b")" "$out/parity-$n-${c//[:+]/_}.log" | tail -1
      done
    done ;;
  zoo)
    # benchmarks/zoo_gpu.py on BUNDLE_DIR (default bundles_out/zoo/0.26.0): resumable rows in OUT_DIR/rows/
    zoo_parity=${ZOO_PARITY-prefill:32,decode:2x64}
    # ZOO_RETRY_FROM=<an earlier zoo-gpu.json>: only the bundles that did not pass there
    $py benchmarks/zoo_gpu.py "${1:-bundles_out/zoo/0.26.0}" "$out" --budget-s "${BUDGET_S:-480}" \
      ${zoo_parity:+--parity "$zoo_parity"} ${ZOO_RETRY_FROM:+--retry-from "$ZOO_RETRY_FROM"} > "$out/zoo-gpu.log" 2>&1
    echo "zoo rc=$?"; tail -3 "$out/zoo-gpu.log" ;;
  speed)
    # benchmarks/layer_speed.py (bundle vs transformers, same weights); SPEED_ARGS e.g. "--quick"
    $py benchmarks/layer_speed.py ${SPEED_ARGS:---quick} --budget-s "${BUDGET_S:-480}" > "$out/layer-speed.log" 2>&1
    echo "speed rc=$?"; tail -25 "$out/layer-speed.log"; cp benchmarks/results/*-layer-speed-*.json "$out/" 2>/dev/null ;;
  moe)
    bundles=("$@"); [ ${#bundles[@]} -eq 0 ] && bundles=(bundles_out/fused_experts.py bundles_out/Qwen3MoeDecoderLayer.py)
    export VLLM_BUNDLE_CACHE=${VLLM_BUNDLE_CACHE:-$(mktemp -d)} PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
    mkdir -p "$out/moe-configs"
    for b in "${bundles[@]}"; do n=$(label "$b")
      $py "$b" tune-moe --batch-sizes "${MOE_BATCH_SIZES:-1,8,64,256,1024,4096}" \
        --budget-s $(( ${BUDGET_S:-420} / ${#bundles[@]} )) > "$out/tune-moe-$n.log" 2>&1
      echo "$n tune-moe rc=$?"; grep "^tune-moe" "$out/tune-moe-$n.log" | tail -8
      sed -n 's/^tune-moe: wrote \(.*\) ([0-9]* batch sizes, [0-9]* s)$/\1/p' "$out/tune-moe-$n.log" |
        while read -r f; do cp "$f" "$out/moe-configs/"; done
    done ;;
  attention)
    k=bundles_out/attention_kernels
    $py benchmarks/attention_speed.py --unified $k/unified_attention.py --prefix-prefill $k/prefix_prefill.py \
      --triton-prefill $k/triton_prefill_attention.py --tokens 512,4096,32768 --iters 20 \
      ${ATTN_LAUNCH:+--unified-launch "${ATTN_LAUNCH// /,}"} \
      --out "$out/attention-speed.json" > "$out/attention-speed.log" 2>&1
    echo "attention rc=$?"; tail -4 "$out/attention-speed.log" ;;
  tune-attention)
    bundles=("$@"); [ ${#bundles[@]} -eq 0 ] && bundles=(bundles_out/{Qwen3Moe,Qwen3,Llama}DecoderLayer.py)
    export VLLM_BUNDLE_CACHE=${VLLM_BUNDLE_CACHE:-$(mktemp -d)}
    for b in "${bundles[@]}"; do n=$(label "$b")
      $py "$b" tune-attention --tokens "${ATTN_TOKENS:-512,4096,32768}" \
        --budget-s $(( ${BUDGET_S:-240} / ${#bundles[@]} )) > "$out/tune-attention-$n.log" 2>&1
      echo "$n tune-attention rc=$?"; grep "^tune-attention" "$out/tune-attention-$n.log" | tail -4
    done
    cp -r "$VLLM_BUNDLE_CACHE/attention-configs" "$out/" 2>/dev/null ;;
  cold)
    b=${1:-bundles_out/Qwen3MoeDecoderLayer.py}; c=$(mktemp -d)
    for k in cold warm; do
      s=$(date +%s.%N)
      VLLM_BUNDLE_CACHE=$c/bundle TRITON_CACHE_DIR=$c/triton TORCHINDUCTOR_CACHE_DIR=$c/inductor \
        $py "$b" run --small > "$out/cold-build-$k.log" 2>&1
      echo "$b $k rc=$? wall_s=$($py -c "import time; print(round(time.time() - $s, 2))")" | tee -a "$out/cold-build.txt"
    done
    echo "nproc $(nproc); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)" >> "$out/cold-build.txt" ;;
  profile)
    bundles=("$@"); [ ${#bundles[@]} -eq 0 ] && bundles=(bundles_out/{Qwen3Moe,Qwen3,Llama}DecoderLayer.py)
    for b in "${bundles[@]}"; do n=$(label "$b")
      for c in ${PROFILE_SIZES:-prefill:4096 prefill:32768 decode:64x4096}; do
        w=${c%%:*}; s=${c#*:}; args=(--workload "$w")
        if [ "$w" = decode ]; then args+=(--batch "${s%x*}" --context "${s#*x}"); else args+=(--tokens "$s"); fi
        $py "$b" bench "${args[@]}" --iters 10 --profile 3 --json "$out/profile-$n-${c//:/_}.json" \
          > "$out/profile-$n-${c//:/_}.log" 2>&1
        echo "$n $c rc=$?"
      done
    done ;;
  *) echo "usage: $0 ops|examples|triton|parity|zoo|speed|moe|attention|tune-attention|cold|profile OUT_DIR [BUNDLE...]" >&2; exit 2 ;;
esac
[ -n "${PACK:-}" ] && tar -czf "$PACK" -C "$out" .
exit 0
