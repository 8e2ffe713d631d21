#!/usr/bin/env bash
# Compare the competing head-direction hypotheses of compare_hypotheses.toml from the command
# line: validate the spec, then run the 5-fold comparison (about a minute on a laptop).
# Writes comparison.csv and comparison.png to examples/output/compare (or to the folder given
# as the first argument).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/output/compare}"

# $PYTHON -m glmformula if PYTHON is set, else the installed command, else python3 -m glmformula
# (e.g. from a source checkout).
if [[ -n "${PYTHON:-}" ]]; then
    run=("$PYTHON" -m glmformula)
elif command -v glmformula >/dev/null 2>&1; then
    run=(glmformula)
else
    run=(python3 -m glmformula)
fi

"${run[@]}" check "$here/compare_hypotheses.toml"
"${run[@]}" compare "$here/compare_hypotheses.toml" --out "$out"
