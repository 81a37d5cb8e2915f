#!/usr/bin/env bash
# The GPU check for the trainer, in one call on a lent CUDA machine (see README, Performance), under 8 minutes:
# installs the carried wheels (diffusers, bitsandbytes, ... in .whl/), prints the GPU, then runs
#   python -m bench.gpu_step                     SD 1.5 architecture, random weights, 512 px: the plain loop against
#                                                dreambot's step eager, compiled and with CUDA graphs
#                                                (reduce-overhead), the UNet's share of bf16 peak, /imagine 1 and 4
#   python -m bench.train --full --family sdxl   SDXL base at 1024 px: step time and peak memory under
#                                                trainer.memory's plan and the leanest plan, beside the estimates
# Output lands in $OUT (the device tool) or bench/out: <step>.log and <step>.json per step, gpu.txt.
#
#   bash bench/gpu_check.sh --dry-run   the same steps on the CPU with the tiny models and no nvidia-smi:
#                                       bench.gpu_step --dry-run and bench.train --family sdxl (about half a minute)
# Every step runs even when one before it fails; the script then exits 1. $PYTHON picks the interpreter.
set -uo pipefail
dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac
OUT=${OUT:-bench/out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1

failed=0
step() {  # step NAME COMMAND...: run it, its output also in $OUT/NAME.log; a failure is remembered, the rest still run
  local name=$1
  shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ]; then
    echo "== $name FAILED (exit $rc)"
    failed=1
  fi
}

if [ "$dry_run" = 0 ]; then
  nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt" || failed=1
fi
"$PYTHON" -c "
from importlib import metadata
names = ('torch', 'diffusers', 'transformers', 'peft', 'bitsandbytes')
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return 'missing'
print(' '.join(f'{n} {version(n)}' for n in names))" | tee -a "$OUT/gpu.txt"

if [ "$dry_run" = 1 ]; then
  step gpu_step "$PYTHON" -m bench.gpu_step --dry-run --out "$OUT/gpu_step.json"
  step train_sdxl "$PYTHON" -m bench.train --family sdxl --out "$OUT/train_sdxl.json"
else
  step gpu_step "$PYTHON" -m bench.gpu_step --out "$OUT/gpu_step.json"
  step train_sdxl "$PYTHON" -m bench.train --full --family sdxl --out "$OUT/train_sdxl.json"
fi
exit "$failed"
