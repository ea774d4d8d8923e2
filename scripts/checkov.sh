#!/usr/bin/env bash
# Static security checks of terraform/ with checkov, run from its own venv.
#
# checkov pins boto3 1.35 and packaging<24 and ships its own hcl2 fork, which
# would break the main stack, so it lives in .venv-checkov (git-ignored),
# installed from the exact pins in terraform/checkov-requirements.txt. The
# venv is (re)built when missing or when the pins changed since it was built.
#
# Exits non-zero when any check fails, when a .tf file does not parse, or
# when checkov scanned no resource at all (a wrong directory must not pass).
# Skips are inline `#checkov:skip=` comments, listed in terraform/checkov-skips.md.
#
# Usage: scripts/checkov.sh [extra checkov arguments]
# Env:   PYTHON (default python3) creates the venv; CHECKOV_VENV overrides its path.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

python="${PYTHON:-python3}"
venv="${CHECKOV_VENV:-$repo_root/.venv-checkov}"
requirements="terraform/checkov-requirements.txt"
stamp="$venv/.requirements.sha256"
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [[ ! -x "$venv/bin/checkov" || ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
    echo "checkov.sh: installing checkov into $venv from $requirements" >&2
    start=$SECONDS
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    install_log="$(mktemp)"
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" > "$install_log" 2>&1; then
        tail -n 40 "$install_log" >&2
        echo "checkov.sh: pip install failed (full log: $install_log)" >&2
        exit 2
    fi
    rm -f "$install_log"
    echo "$wanted" > "$stamp"
    echo "checkov.sh: venv ready in $((SECONDS - start)) s" >&2
fi

results_dir="$(mktemp -d)"
trap 'rm -rf "$results_dir"' EXIT

# CLI report on stdout (ends with "Passed checks: N, Failed checks: N, Skipped
# checks: N"), JSON beside it for the parse-error and resource-count guards.
set +e
"$venv/bin/checkov" \
    --config-file terraform/.checkov.yaml \
    --directory terraform \
    --output cli --output json \
    --output-file-path "console,$results_dir/results.json" \
    "$@"
status=$?
set -e

"$venv/bin/python" - "$results_dir" <<'PY'
import json
import pathlib
import sys

paths = list(pathlib.Path(sys.argv[1]).glob("*.json"))
if not paths:
    sys.exit("checkov.sh: checkov wrote no JSON report")
report = json.loads(paths[0].read_text())
reports = report if isinstance(report, list) else [report]
summary = {"resource_count": 0, "parsing_errors": 0, "failed": 0}
for item in reports:
    for key in summary:
        summary[key] += item.get("summary", {}).get(key, 0)
if summary["parsing_errors"]:
    sys.exit(f"checkov.sh: {summary['parsing_errors']} terraform file(s) failed to parse")
if summary["resource_count"] == 0:
    sys.exit("checkov.sh: checkov scanned no resource")
PY

exit "$status"
