#!/usr/bin/env bash
# The GPU rows, in one call of the `device` tool (a lent NVIDIA GPU, its own python3 with torch; see docs/data.md):
#
#   bash benchmarks/gpu_session.sh DATA OUT
#
# DATA: a copy of ../shared/data's hymenoptera/ and cifar10-jpg/ (a subset: the device's working tree is
# limited), carried beside the checkout; OUT: where logs and JSON go. Wheels under .whl/ (pydantic, which that
# image lacks) are installed to /tmp/site first when present. Each step has its own time limit and a failing
# step does not stop the next:
#   1. `edgekd distill` (the CLI, on the GPU: accelerate + bf16) on hymenoptera, teacher trained then online;
#      pre-flight against jetson-orin (the image has no OpenVINO for cpu-x86's check)
#   2. benchmarks/gpu_energy.py: images/s and J/image through edgekd's NVML meter (counter and power)
#   3. benchmarks/loader_throughput.py: loader images/s and the data-wait share of bf16 training epochs
set -u
DATA=${1:?data folder}
OUT=${2:?output folder}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
{
  nvidia-smi --query-gpu=name,driver_version,power.draw,power.limit,clocks.sm --format=csv
  nproc
  python3 -c "import torch, torchvision, timm, accelerate, pydantic; print('torch', torch.__version__, 'tv',
torchvision.__version__, 'timm', timm.__version__, 'accelerate', accelerate.__version__, 'pydantic',
pydantic.VERSION, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"

echo "== 1. edgekd distill on the GPU"
# (a file, not stdin: forkserver loader workers re-import the main module by its path)
cat > /tmp/gpu_distill.py <<'EOF'
import sys
import time

import edgekd.targets as targets
from edgekd.cli import main

if __name__ == "__main__":
    orig = targets.load_target
    targets.load_target = lambda name: orig("jetson-orin")
    t0 = time.perf_counter()
    data = sys.argv[1]
    sys.argv = ["edgekd", "distill", "--data", f"{data}/hymenoptera", "--student", "mobilevit_xxs",
                "--student-weights", "none", "--epochs", "4", "--teacher-epochs", "4", "--image-size", "160",
                "--out", "/tmp/gpu-distill"]
    try:
        main()
    finally:
        print(f"distill wall {time.perf_counter() - t0:.1f} s")
EOF
timeout 150 python3 /tmp/gpu_distill.py "$DATA" 2>&1 | grep -v '━' | tee "$OUT/distill.log"
cp /tmp/gpu-distill/student/student.json "$OUT/distill_student_card.json" 2>/dev/null

echo "== 2. NVML energy"
timeout 100 python3 benchmarks/gpu_energy.py --out "$OUT/gpu_energy.json" 2>&1 | tee "$OUT/gpu_energy.log"

echo "== 3. loader throughput with bf16 training"
timeout 330 python3 benchmarks/loader_throughput.py --data-root "$DATA" --rounds 2 --epochs 3 --train-epochs 3 \
  --plain-workers 8 --work /tmp/bench-loader --out "$OUT/loader_throughput_gpu.json" 2>&1 | grep -v '━' \
  | tee "$OUT/loader.log"
echo "== done"
