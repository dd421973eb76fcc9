#!/usr/bin/env bash
# Issue 12's evidence grid on one GPU: `solo-rgbd compare experiment=gpu` (6 rows x 3 seeds x
# the frozen, finetune and probe protocols on 2,048 synthetic pairs), timed, with its
# tables, CSVs and charts copied to $OUT. Sized for <= 10 minutes on one H100 (unmeasured).
# Same set-up as bench/gpu_checks.sh (carry the wheels, export PYTHONPATH), then
#   bash bench/gpu_evidence.sh [compare overrides, e.g. 'seeds=[0]']
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
start=$(date +%s)
python3 -m solo_rgbd.cli compare experiment=gpu out=/tmp/compare_gpu "$@" 2>&1 \
    | grep -E '^\[compare\]|failed|Error' | tee "$OUT/compare_log.txt" || true
echo "{\"compare_gpu_wall_s\": $(( $(date +%s) - start ))}" | tee "$OUT/compare_time.json"
cp /tmp/compare_gpu/tables.md /tmp/compare_gpu/*.json /tmp/compare_gpu/*.png "$OUT/" 2>/dev/null || true
