#!/usr/bin/env bash
# Commit a finished study row's files (the runner's --after_row hook; README "Results"):
#   bash scripts/commit_study_row.sh FILE...      (STUDY and STUDY_ROW name the commit)
# Only these files are committed: other staged work is left alone. Retries while another git command holds
# the repository's lock. Teacher checkpoints are declared exceptions in .gitignore, so no `git add -f`.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash scripts/commit_study_row.sh FILE..." >&2; exit 2; }
FILES=(); for f in "$@"; do FILES+=("$(realpath "$f")"); done
cd "$(dirname "${FILES[0]}")"
MESSAGE="CIFAR-10 ${STUDY:-} study: row ${STUDY_ROW:-?} finished"
ERR=$(mktemp); trap 'rm -f "$ERR"' EXIT
for attempt in $(seq 1 20); do
  if git add -- "${FILES[@]}" 2>"$ERR" && git commit -q -m "$MESSAGE" -- "${FILES[@]}" 2>>"$ERR"; then
    echo "committed: $MESSAGE"; exit 0
  fi
  grep -q "index.lock" "$ERR" || { echo "error: git commit failed: $(cat "$ERR")" >&2; exit 1; }
  sleep $((2 + attempt))
done
echo "error: git commit gave up: the repository stayed locked" >&2
exit 1
