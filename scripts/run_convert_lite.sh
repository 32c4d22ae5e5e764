#!/usr/bin/env bash
# MindSpore Lite model (.ms, for phones and edge NPUs) from an exported MindIR file, with converter_lite.
#   bash scripts/run_convert_lite.sh MODEL.mindir [OUTPUT] [--optimize general|ascend_oriented|none] [--dry_run]
# OUTPUT: path without .ms (default: MODEL without .mindir). converter_lite ships with the MindSpore Lite
# release for your platform (not on PyPI for every Python); put its folder on PATH and LD_LIBRARY_PATH.
# --dry_run prints the command without running it (and without needing converter_lite).
set -euo pipefail
usage() {
  echo "usage: bash scripts/run_convert_lite.sh MODEL.mindir [OUTPUT] [--optimize general|ascend_oriented|none] [--dry_run]" >&2
  exit 2
}
POSITIONAL=(); OPTIMIZE=general; DRY_RUN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --optimize) [ $# -ge 2 ] || usage; OPTIMIZE="$2"; shift 2;;
    --dry_run) DRY_RUN=1; shift;;
    -h|--help) usage;;
    --*) echo "error: unknown option $1" >&2; usage;;
    *) POSITIONAL+=("$1"); shift;;
  esac
done
[ ${#POSITIONAL[@]} -ge 1 ] && [ ${#POSITIONAL[@]} -le 2 ] || usage
case "$OPTIMIZE" in general|ascend_oriented|none) ;; *) echo "error: --optimize $OPTIMIZE is not general, ascend_oriented or none" >&2; exit 2;; esac
MODEL="${POSITIONAL[0]}"
[ -f "$MODEL" ] || { echo "error: model file $MODEL does not exist" >&2; exit 2; }
case "$MODEL" in *.mindir) ;; *) echo "error: $MODEL is not a .mindir file (export with --file_format MINDIR)" >&2; exit 2;; esac
MODEL="$(realpath "$MODEL")"
OUTPUT="${POSITIONAL[1]:-${MODEL%.mindir}}"; OUTPUT="${OUTPUT%.ms}"
CMD=(converter_lite --fmk=MINDIR --modelFile="$MODEL" --outputFile="$OUTPUT" --optimize="$OPTIMIZE")
if [ "$DRY_RUN" = 1 ]; then echo "${CMD[*]}"; exit 0; fi
if ! command -v converter_lite >/dev/null 2>&1; then
  echo "error: converter_lite not found on PATH: install the MindSpore Lite release for your platform; nothing was converted" >&2
  exit 127
fi
echo "${CMD[*]}"
"${CMD[@]}"
[ -f "$OUTPUT.ms" ] || { echo "error: converter_lite finished but $OUTPUT.ms is missing" >&2; exit 1; }
echo "wrote $OUTPUT.ms"
