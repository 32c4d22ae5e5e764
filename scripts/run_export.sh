#!/usr/bin/env bash
# Export a trained network (BatchNorm folded) to MINDIR, ONNX or AIR (AIR on Ascend only).
#   bash scripts/run_export.sh CKPT_FILE ARCH [MINDIR|ONNX|AIR] [extra --key value ...]
# e.g. bash scripts/run_export.sh outputs/p20/best.ckpt plain20 ONNX --file_name plain20 --dataset cifar10
set -euo pipefail
usage() { echo "usage: bash scripts/run_export.sh CKPT_FILE ARCH [MINDIR|ONNX|AIR] [--key value ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CKPT="$1"; ARCH="$2"; shift 2
FORMAT=MINDIR
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then FORMAT="$1"; shift; fi
case "$FORMAT" in MINDIR|ONNX|AIR) ;; *) echo "error: format '$FORMAT' is not MINDIR, ONNX or AIR" >&2; usage;; esac
[ -f "$CKPT" ] || { echo "error: checkpoint $CKPT does not exist" >&2; exit 2; }
exec python "$ROOT/export.py" --ckpt_file "$(realpath "$CKPT")" --arch "$ARCH" --file_format "$FORMAT" "$@"
