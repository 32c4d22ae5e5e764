#!/usr/bin/env bash
# Evaluate a checkpoint.
#   bash scripts/run_eval.sh CONFIG DATA_PATH CKPT_FILE [extra --key value ...]
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: bash scripts/run_eval.sh CONFIG DATA_PATH CKPT_FILE [--key value ...]" >&2
  exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONFIG="$1"; DATA_PATH="$2"; CKPT="$3"; shift 3
[ -f "$CONFIG" ] || { echo "error: config $CONFIG does not exist" >&2; exit 2; }
[ -d "$DATA_PATH" ] || { echo "error: data path $DATA_PATH is not a directory" >&2; exit 2; }
[ -f "$CKPT" ] || { echo "error: checkpoint $CKPT does not exist" >&2; exit 2; }
exec python "$ROOT/eval.py" --config "$CONFIG" --data_path "$DATA_PATH" --ckpt_file "$CKPT" "$@"
