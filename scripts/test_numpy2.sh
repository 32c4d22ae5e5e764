#!/usr/bin/env bash
# Run the test suite under numpy 2 in the current environment, without touching its installed numpy:
# numpy 2.x is installed into a private folder that is put first on PYTHONPATH for this run only.
#   bash scripts/test_numpy2.sh [NUMPY_VERSION] [pytest args]     (default 2.4.6, all tests)
# CI runs the suite with the numpy that `pip install -e .` resolves; this proves the other major version.
set -euo pipefail
VERSION=${1:-2.4.6}; shift || true
cd "$(dirname "$0")/.."
OVERLAY=$(mktemp -d)
trap 'rm -rf "$OVERLAY"' EXIT
python -m pip install --quiet --disable-pip-version-check --no-deps --target "$OVERLAY" "numpy==$VERSION"
PYTHONPATH="$OVERLAY${PYTHONPATH:+:$PYTHONPATH}" python - <<PY
import numpy
assert numpy.__version__ == "$VERSION", numpy.__version__
print("numpy", numpy.__version__, "from", numpy.__file__)
PY
PYTHONPATH="$OVERLAY${PYTHONPATH:+:$PYTHONPATH}" python -m pytest -q -p no:cacheprovider "${@:-tests}"
