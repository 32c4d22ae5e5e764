#!/usr/bin/env bash
# Commit a study row's files (the runner's --after_row hook; docs/results.md):
#   bash scripts/commit_study_row.sh PATH...   (STUDY and STUDY_ROW name the commit; STUDY_MESSAGE replaces it)
# Only these paths are committed: other staged work is left alone. A path that no longer exists (a finished row's
# snapshot folder) is committed as removed. Retries while another git command holds the repository's lock.
# Teacher checkpoints and snapshots are declared exceptions in .gitignore, so no `git add -f`.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bash scripts/commit_study_row.sh PATH..." >&2; exit 2; }
PATHS=(); for f in "$@"; do PATHS+=("$(realpath -m "$f")"); done
cd "$(dirname "${PATHS[0]}")"
MESSAGE=${STUDY_MESSAGE:-"CIFAR-10 ${STUDY:-} study: row ${STUDY_ROW:-?} finished"}
ERR=$(mktemp); trap 'rm -f "$ERR"' EXIT
stage() {
  local p
  COMMIT=()
  for p in "${PATHS[@]}"; do
    if [ -e "$p" ]; then
      git add -- "$p" || return 1
      COMMIT+=("$p")
    elif [ -n "$(git ls-files -- "$p")" ]; then  # tracked, now gone: commit its removal
      git rm -r -q --cached -- "$p" || return 1
      COMMIT+=("$p")
    fi
  done
}
for attempt in $(seq 1 20); do
  if stage 2>"$ERR" && [ ${#COMMIT[@]} -eq 0 ]; then
    echo "nothing to commit: none of the paths exists or is tracked"; exit 0  # a bare `git commit` would take all
  fi
  if [ ${#COMMIT[@]} -gt 0 ] && git commit -q -m "$MESSAGE" -- "${COMMIT[@]}" 2>>"$ERR"; then
    echo "committed: $MESSAGE"; exit 0
  fi
  grep -q "index.lock" "$ERR" || { echo "error: git commit failed: $(cat "$ERR")" >&2; exit 1; }
  sleep $((2 + attempt))
done
echo "error: git commit gave up: the repository stayed locked" >&2
exit 1
