#!/usr/bin/env bash
# The GPU checks the issues ask for, as one script for a session lent a device machine.
#
# The device image has torch, lightning, timm, einops, matplotlib, scikit-image and OpenCV, but
# not kornia, kornia-rs, hydra-core, omegaconf, antlr4-python3-runtime, lightly or pysodmetrics:
# carry them as wheels (see the device tool's README: pip download --no-deps --only-binary=:all:
# --python-version 3.12 ... -d .whl NAME==VERSION, with the versions in `pip list` here), then
#   run: python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
#        export PYTHONPATH=/tmp/site && bash bench/gpu_checks.sh
# Writes JSON and the run's metrics to $OUT.
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# MBCF step vs two MoCo steps at the paper's scale: ResNet-50, 224 px, batch 64, bf16, NHWC
python3 bench/step.py --backbone resnet50 --size 224 --batch 64 --bf16 --channels-last \
    --paper-dims --queue 16384 --steps 20 --rounds 3 | tee "$OUT/step_r50_bf16.json"
# two paired views of 64 pairs (256 -> 224): kornia reference vs the fast batched kernels
python3 bench/views.py --device cuda --batch 64 --size 256 --crop 224 --reps 20 \
    | tee "$OUT/views_cuda.json"
# data pipeline with the decoded cache on the GPU
python3 bench/data_pipeline.py --device cuda --n 512 --batch 64 --crop 224 --batches 30 \
    | tee "$OUT/data_pipeline_cuda.json"
# steady-state pairs/s in the real Lightning loop, GPU busy, host syncs per step, views' share
python3 bench/e2e.py --warmup 20 --steps 50 --profile 5 experiment=paper data.synthetic.n=4096 \
    data.cache_device=cuda method_kwargs.stage1_epochs=0 method_kwargs.stage2_epochs=1 \
    | tail -1 | tee "$OUT/e2e_paper_stage2.json"
# the same with the guard's flag read every 10th step (no host sync on the 9 in between)
python3 bench/e2e.py --warmup 20 --steps 50 --profile 5 experiment=paper data.synthetic.n=4096 \
    data.cache_device=cuda method_kwargs.stage1_epochs=0 method_kwargs.stage2_epochs=1 \
    nan_guard.every_n_steps=10 log_every_n_steps=50 | tail -1 | tee "$OUT/e2e_paper_stage2_nosync.json"
# one real Lightning run end to end on the GPU (bf16-mixed, channels_last, cache on device)
python3 -m solo_rgbd.cli pretrain method=mbcf experiment=paper data.synthetic.n=1024 \
    data.cache_device=cuda method_kwargs.queue_size=4096 method_kwargs.stage1_epochs=1 \
    trainer.max_epochs=2 trainer.enable_progress_bar=false output_dir="$OUT/runs" \
    run_name=gpu 2>&1 | tail -5
cp "$OUT/runs/mbcf/gpu/logs/metrics.csv" "$OUT/metrics.csv"
