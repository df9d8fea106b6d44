#!/usr/bin/env bash
# The CUDA path, proven on a machine with a GPU (docs/hosting.md): the CUDA-marked tests, then the server benchmark
# on CUDA for ViT-B/16 and ViT-H/14 (forward, trace, relevance, step renders, cold start). Results go to $OUT (or
# bench-results/gpu), the benchmark's Markdown table to gpu-bench.md there, for docs/performance.md's CUDA table.
#
#     bash benchmarks/gpu_check.sh            # about 6 minutes on one H200
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-results/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=1 EXPLORER_OFFLINE=1

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.device_count(), torch.cuda.get_device_name(0))" \
    > "$OUT/torch.txt" 2>&1

# 1. The tests: the CUDA-marked ones, then the app's and the hosting rehearsal on a machine that has CUDA.
timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py -rs > "$OUT/tests-cuda.txt" 2>&1
tests_rc=$?
timeout 240 "$PY" -m pytest -q -p no:cacheprovider -x tests/test_hosting.py tests/test_app.py > "$OUT/tests-app.txt" 2>&1
app_rc=$?

# 2. The benchmark on CUDA only (the CPU rows are measured elsewhere), with its Markdown table.
timeout 420 "$PY" -m benchmarks.server --device cuda --model ViT-B/16 --model ViT-H/14 --repeats 10 --cold-starts 2 \
    --json "$OUT/gpu-bench.json" --markdown > "$OUT/gpu-bench.md" 2>&1
bench_rc=$?

echo "tests (cuda): $tests_rc; tests (app, hosting): $app_rc; benchmark: $bench_rc" | tee "$OUT/summary.txt"
tail -n 3 "$OUT/tests-cuda.txt" "$OUT/tests-app.txt" | tee -a "$OUT/summary.txt"
[ "$tests_rc" -eq 0 ] && [ "$app_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
