#!/usr/bin/env bash
# Ascend offline model (.om) with ATC from an exported ONNX (--framework=5) or AIR (--framework=1) file.
#   bash scripts/run_convert_om.sh MODEL.onnx|MODEL.air SOC_VERSION [OUTPUT] [--input_shape NAME:N,C,H,W] [--dry_run]
# SOC_VERSION: your chip, e.g. Ascend310, Ascend310P3, Ascend910B1 (`npu-smi info`). OUTPUT: path without .om
# (default: MODEL without its suffix). The input shape is read from an ONNX file; give it for AIR.
# ATC comes with the CANN toolkit: source /usr/local/Ascend/ascend-toolkit/set_env.sh first.
# --dry_run prints the ATC command without running it (and without needing ATC).
set -euo pipefail
usage() {
  echo "usage: bash scripts/run_convert_om.sh MODEL.onnx|MODEL.air SOC_VERSION [OUTPUT] [--input_shape NAME:N,C,H,W] [--dry_run]" >&2
  exit 2
}
POSITIONAL=(); INPUT_SHAPE=""; DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --input_shape) [ $# -ge 2 ] || usage; INPUT_SHAPE="$2"; shift 2;;
    --dry_run) DRY_RUN=1; shift;;
    -h|--help) usage;;
    --*) echo "error: unknown option $1" >&2; usage;;
    *) POSITIONAL+=("$1"); shift;;
  esac
done
[ ${#POSITIONAL[@]} -ge 2 ] && [ ${#POSITIONAL[@]} -le 3 ] || usage
MODEL="${POSITIONAL[0]}"; SOC="${POSITIONAL[1]}"
[ -f "$MODEL" ] || { echo "error: model file $MODEL does not exist" >&2; exit 2; }
MODEL="$(realpath "$MODEL")"
case "$MODEL" in
  *.onnx) FRAMEWORK=5;;
  *.air) FRAMEWORK=1;;
  *) echo "error: $MODEL is neither .onnx (ATC --framework=5) nor .air (--framework=1)" >&2; exit 2;;
esac
OUTPUT="${POSITIONAL[2]:-${MODEL%.*}}"; OUTPUT="${OUTPUT%.om}"
if [ -z "$INPUT_SHAPE" ]; then
  if [ "$FRAMEWORK" = 1 ]; then echo "error: give --input_shape NAME:N,C,H,W for an AIR file" >&2; exit 2; fi
  INPUT_SHAPE=$(python - "$MODEL" <<'PY'
import sys
try:
    import onnxruntime as ort
except ImportError:
    print("error: reading the input shape needs onnxruntime (pip install onnxruntime), or pass --input_shape",
          file=sys.stderr)
    sys.exit(2)
try:
    i = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"]).get_inputs()[0]
except Exception as exc:  # onnxruntime's parse errors: the file is corrupt, truncated or not ONNX
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
    print(f"error: {sys.argv[1]} cannot be read as ONNX ({reason}); export it again with export.py", file=sys.stderr)
    sys.exit(2)
print(f"{i.name}:{','.join(str(d) for d in i.shape)}")
PY
)
fi
CMD=(atc --model="$MODEL" --framework="$FRAMEWORK" --output="$OUTPUT" --soc_version="$SOC" --input_shape="$INPUT_SHAPE")
if [ "$DRY_RUN" = 1 ]; then echo "${CMD[*]}"; exit 0; fi
if ! command -v atc >/dev/null 2>&1; then
  echo "error: ATC not found on PATH: install Ascend's CANN toolkit and source its set_env.sh; nothing was converted" >&2
  exit 127
fi
source "$(dirname "$0")/converter_output.sh"
run_converter ATC "$OUTPUT.om" "${CMD[@]}"
