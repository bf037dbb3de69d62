#!/usr/bin/env bash
# Security checks of `make test`: bandit (no high-severity finding in movierec/) and pip-audit
# (no known vulnerability in the installed, pinned packages). Usage: ops/audit.sh [venv-bin]
#
# pip-audit asks an advisory source (PyPI's vulnerability data) about each package. When that
# source cannot be reached, or answers for none of the packages (an index mirror without
# PyPI's JSON API does that), the audit did not happen: this says so in one clear line and
# goes on, rather than printing "No known vulnerabilities found". A package it did audit with
# a known vulnerability fails the run.
set -uo pipefail
bin="${1:-.venv/bin}"

if ! "$bin/bandit" -q -r movierec --severity-level high; then
  echo "bandit: high-severity findings (above); fix them" >&2
  exit 1
fi
echo "bandit: no high-severity findings in movierec/"

report="$(mktemp)"; errors="$(mktemp)"
trap 'rm -f "$report" "$errors"' EXIT
"$bin/pip-audit" --progress-spinner off --skip-editable --format json --output "$report" \
  2>"$errors"
status=$?
if [ ! -s "$report" ]; then
  echo "pip-audit: SKIPPED: the advisory source cannot be reached ($(tail -n 1 "$errors"))"
  exit 0
fi
"$bin/python" - "$report" "$status" <<'PY'
import json, sys

report, status = json.load(open(sys.argv[1])), int(sys.argv[2])
deps = report.get("dependencies", [])
audited = [d for d in deps if "skip_reason" not in d]
vulnerable = [d for d in audited if d.get("vulns")]
if not audited:
    print(f"pip-audit: SKIPPED: the advisory source answered for none of {len(deps)} packages "
          "(no PyPI vulnerability data reachable from here)")
    sys.exit(0)
for dep in vulnerable:
    ids = ", ".join(v["id"] for v in dep["vulns"])
    print(f"pip-audit: {dep['name']} {dep['version']}: {ids}", file=sys.stderr)
if vulnerable or status not in (0, 1):
    sys.exit(1)
skipped = len(deps) - len(audited)
print(f"pip-audit: no known vulnerabilities in {len(audited)} packages"
      + (f" ({skipped} could not be audited)" if skipped else ""))
PY
