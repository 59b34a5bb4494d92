#!/usr/bin/env bash
# Run on a GPU or TPU machine (after `pip install -e '.[gpu]'` or '.[tpu]', plus the test
# extra for the torch peers): parity, PPO and IRL at the paper presets' real shapes on
# random weights, the benchmarks, and the compiled memory plan on this accelerator.
# Results go to $OUT (default runs/accelerator_check).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/runs/accelerator_check}"
PY="${PYTHON:-python}"
cd "$ROOT"
mkdir -p "$OUT"
"$PY" -c "import jax; print(jax.default_backend(), jax.devices())" | tee "$OUT/devices.txt"

# 1-3. bf16 and attention-kernel parity, PPO iterations and IRL epochs (70M and 410M).
"$PY" -m benchmarks.accelerator_check --shapes=pythia-70m,pythia-410m | tee "$OUT/check.jsonl"

# 4. The benchmarks against PyTorch (torch runs on its own device choice).
"$PY" -m benchmarks.run_all --out_dir="$OUT/benchmarks" | tee "$OUT/benchmarks.log"

# 5. The memory plan compiled for this accelerator (meshes of the local device count).
N="$("$PY" -c 'import jax; print(jax.device_count())')"
MESHES="data=1"
if [ "$N" -ge 8 ]; then MESHES="data=1;data=1,fsdp=8;data=2,fsdp=4"; fi
XLA_FLAGS="${XLA_FLAGS:-}" "$PY" -m benchmarks.memory_plan --meshes="$MESHES" \
    --out="$OUT/memory_plan.jsonl" | tee "$OUT/memory_plan.log"
echo "results in $OUT"
