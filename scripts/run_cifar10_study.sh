#!/usr/bin/env bash
# The CIFAR-10 studies (docs/results.md): every row that is not finished yet, resumable.
#   bash scripts/run_cifar10_study.sh DATA_PATH [--study converged|plain18|short] [--rows a,b] [--git_commit]
#        [--snapshot_minutes 60] [...]   (every 60 min of a training row: snapshot it, committed with --git_commit)
# --study converged (default): all 40,000 training images, 60 epochs; plain18: ResNet-18 / plain-18 (CIFAR stem),
# 30 epochs; short: the finished 10k-image, 12-epoch study.
# Row results: bench/results/cifar10_converged/ (or cifar10_plain18/, cifar10_study/); run folders: runs/<same name>/ (or --output_dir).
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "Usage: bash $0 DATA_PATH [bench/cifar10_study.py options]" >&2
    echo "  DATA_PATH: the CIFAR-10 binary folder (data_batch_1..5.bin)" >&2
    exit 2
fi
DATA_PATH=$(realpath -m "$1"); shift
if [ ! -d "$DATA_PATH" ]; then
    echo "error: DATA_PATH $DATA_PATH is not a directory" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
ARGS=()
for a in "$@"; do  # --git_commit: commit each finished row's files at once (scripts/commit_study_row.sh)
  if [ "$a" = "--git_commit" ]; then ARGS+=(--after_row "bash scripts/commit_study_row.sh"); else ARGS+=("$a"); fi
done
exec python bench/cifar10_study.py --data_path "$DATA_PATH" ${ARGS[@]+"${ARGS[@]}"}
