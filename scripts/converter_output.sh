# Sourced by run_convert_om.sh and run_convert_lite.sh: run a converter and make sure it wrote its output.
#   run_converter NAME OUTPUT_FILE COMMAND...
# Converters (ATC, converter_lite) can exit 0 without writing anything; an older file at OUTPUT_FILE must not
# then pass for the new result, so the file's inode, size and modification time are compared before and after.
run_converter() {
  local name="$1" output="$2"; shift 2
  stamp() { stat -c '%i %s %y' "$1" 2>/dev/null || true; }  # modification time to the nanosecond
  local before; before=$(stamp "$output")
  echo "$*"
  "$@"
  [ -f "$output" ] || { echo "error: $name finished but $output is missing" >&2; exit 1; }
  if [ -n "$before" ] && [ "$(stamp "$output")" = "$before" ]; then
    echo "error: $name finished but did not write $output (the file there is the old one); see $name's output above" >&2
    exit 1
  fi
  echo "wrote $output"
}
