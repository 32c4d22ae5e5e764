#!/usr/bin/env bash
# The efficiency report (docs/deployment.md, "Efficiency"): analytic memory/FLOPs of every network, then measured latency and
# peak memory of ResNet-50 vs plain-50 in MindSpore, MindIR and onnxruntime. Run on an otherwise idle machine.
#   bash bench/run_efficiency.sh            # full: batch 1 and 8, four runtimes, 2 interleaved rounds
#   bash bench/run_efficiency.sh --quick    # batch 1, one round, MindIR and onnxruntime
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") LATENCY=();;
  --quick) LATENCY=(--quick --output bench/results/inference_latency_quick.json);;
  *) echo "usage: bash bench/run_efficiency.sh [--quick]" >&2; exit 2;;
esac
START=$(date +%s)
python bench/efficiency.py
python bench/inference_latency.py "${LATENCY[@]}"
echo "efficiency report: $(( $(date +%s) - START )) s"
