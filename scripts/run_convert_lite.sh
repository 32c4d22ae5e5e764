#!/usr/bin/env bash
# MindSpore Lite model (.ms, for phones and edge NPUs) from an exported MindIR file, with converter_lite.
#   bash scripts/run_convert_lite.sh MODEL.mindir [OUTPUT] [--optimize general|ascend_oriented|none]
#        [--quant int8 --calib_dir DIR [--dataset NAME] [--calib_size N] [--calib_method minmax|entropy|percentile]]
#        [--dry_run]
# OUTPUT: path without .ms (default: MODEL without .mindir). converter_lite ships with the MindSpore Lite
# release for your platform (not on PyPI for every Python); put its folder on PATH and LD_LIBRARY_PATH.
# --quant int8: full (weights and activations) INT8 quantization. First writes OUTPUT.calibration/ (one float32
# NHWC .bin file per calibration image: DIR's training split, evaluation transform) and OUTPUT.full_quant.cfg,
# then runs converter_lite --configFile=OUTPUT.full_quant.cfg. DIR: the CIFAR binary folder or image folder.
# --dry_run prints the command without running it (and without needing converter_lite); with --quant int8 the
# calibration files and configuration are still written, so that they can be inspected.
set -euo pipefail
usage() {
  echo "usage: bash scripts/run_convert_lite.sh MODEL.mindir [OUTPUT] [--optimize general|ascend_oriented|none]" \
       "[--quant int8 --calib_dir DIR [--dataset NAME] [--calib_size N] [--calib_method M]] [--dry_run]" >&2
  exit 2
}
POSITIONAL=(); OPTIMIZE=general; DRY_RUN=0; QUANT=""; CALIB_DIR=""; CALIB_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --optimize) [ $# -ge 2 ] || usage; OPTIMIZE="$2"; shift 2;;
    --quant) [ $# -ge 2 ] || usage; QUANT="$2"; shift 2;;
    --calib_dir) [ $# -ge 2 ] || usage; CALIB_DIR="$2"; shift 2;;
    --dataset|--calib_size|--calib_method) [ $# -ge 2 ] || usage; CALIB_ARGS+=("$1" "$2"); shift 2;;
    --dry_run) DRY_RUN=1; shift;;
    -h|--help) usage;;
    --*) echo "error: unknown option $1" >&2; usage;;
    *) POSITIONAL+=("$1"); shift;;
  esac
done
[ ${#POSITIONAL[@]} -ge 1 ] && [ ${#POSITIONAL[@]} -le 2 ] || usage
case "$OPTIMIZE" in general|ascend_oriented|none) ;; *) echo "error: --optimize $OPTIMIZE is not general, ascend_oriented or none" >&2; exit 2;; esac
case "$QUANT" in
  "") if [ -n "$CALIB_DIR" ] || [ ${#CALIB_ARGS[@]} -gt 0 ]; then echo "error: --calib_dir, --dataset, --calib_size and --calib_method go with --quant int8" >&2; exit 2; fi;;
  int8) [ -n "$CALIB_DIR" ] || { echo "error: --quant int8 needs --calib_dir DIR (the training data set folder)" >&2; exit 2; };;
  *) echo "error: --quant $QUANT is not int8" >&2; exit 2;;
esac
MODEL="${POSITIONAL[0]}"
[ -f "$MODEL" ] || { echo "error: model file $MODEL does not exist" >&2; exit 2; }
case "$MODEL" in *.mindir) ;; *) echo "error: $MODEL is not a .mindir file (export with --file_format MINDIR)" >&2; exit 2;; esac
MODEL="$(realpath "$MODEL")"
OUTPUT="${POSITIONAL[1]:-${MODEL%.mindir}}"; OUTPUT="${OUTPUT%.ms}"
CMD=(converter_lite --fmk=MINDIR --modelFile="$MODEL" --outputFile="$OUTPUT" --optimize="$OPTIMIZE")
if [ "$DRY_RUN" = 0 ] && ! command -v converter_lite >/dev/null 2>&1; then
  echo "error: converter_lite not found on PATH: install the MindSpore Lite release for your platform; nothing was converted" >&2
  exit 127
fi
if [ "$QUANT" = int8 ]; then
  CONFIG=$(python -m resdist.deploy.quantize --mindir "$MODEL" --calib_dir "$CALIB_DIR" --output "$OUTPUT" ${CALIB_ARGS[@]+"${CALIB_ARGS[@]}"}) || exit $?
  echo "wrote $CONFIG and $OUTPUT.calibration/" >&2
  CMD+=(--configFile="$CONFIG")
fi
if [ "$DRY_RUN" = 1 ]; then echo "${CMD[*]}"; exit 0; fi
source "$(dirname "$0")/converter_output.sh"
run_converter converter_lite "$OUTPUT.ms" "${CMD[@]}"
