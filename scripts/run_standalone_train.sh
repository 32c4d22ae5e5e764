#!/usr/bin/env bash
# Train on one device.
#   bash scripts/run_standalone_train.sh CONFIG DATA_PATH [OUTPUT_DIR] [extra --key value ...]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash scripts/run_standalone_train.sh CONFIG DATA_PATH [OUTPUT_DIR] [--key value ...]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="$1"; DATA_PATH="$2"; shift 2
[ -f "$CONFIG" ] || { echo "error: config $CONFIG does not exist" >&2; exit 2; }
[ -d "$DATA_PATH" ] || { echo "error: data path $DATA_PATH is not a directory" >&2; exit 2; }
OUTPUT_ARGS=()
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then OUTPUT_ARGS=(--output_dir "$1"); shift; fi
exec python "$ROOT/train.py" --config "$CONFIG" --data_path "$DATA_PATH" "${OUTPUT_ARGS[@]}" "$@"
