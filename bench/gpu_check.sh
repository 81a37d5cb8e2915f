#!/usr/bin/env bash
# The GPU check for the trainer, in one call on a lent CUDA machine (see README, Benchmarks):
# installs the carried wheels (diffusers, bitsandbytes, ... in .whl/), then runs
# `python -m bench.train --full` (SD 1.5 at 512 px) and `python -m bench.train --full --family sdxl`
# (SDXL base at 1024 px: step time and peak memory under trainer.memory's plan and the leanest plan,
# beside the plan's estimates), all with random weights. Output lands in $OUT (the device tool) or bench/out.
# Without a GPU, `python -m bench.train [--family sdxl]` runs the same code on the tiny models.
set -uo pipefail
OUT=${OUT:-bench/out}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, diffusers, bitsandbytes, transformers, peft; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)" | tee -a "$OUT/gpu.txt"
python3 -m bench.train --full --out "$OUT/train_full.json" 2>&1 | tee "$OUT/train_full.log"
python3 -m bench.train --full --family sdxl --out "$OUT/train_sdxl.json" 2>&1 | tee "$OUT/train_sdxl.log"
