"""mypy against a recorded baseline that may only shrink.

Errors are compared as (file, message) without line numbers, so moving code does not break
the check; a new error, or one more of an existing kind in a file, fails it. A fixed error
fails it too until ``--update`` records the smaller baseline (CI never writes it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / ".ci" / "mypy-baseline.txt"
_ERROR = re.compile(r"^(?P<file>[^:]+):\d+(?::\d+)?: error: (?P<message>.*)$")


def current_errors() -> Counter[str]:
    """mypy's errors (config in pyproject.toml) as 'file: message' lines with their counts."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        sys.exit(f"mypy did not run: {proc.stderr.strip() or proc.stdout[-2000:]}")
    errors: Counter[str] = Counter()
    for line in proc.stdout.splitlines():
        m = _ERROR.match(line)
        if m:
            errors[f"{m['file']}: {m['message']}"] += 1
    return errors


def main() -> int:
    errors = current_errors()
    if "--update" in sys.argv[1:]:
        BASELINE.write_text("".join(f"{e}\n" for e in sorted(errors.elements())))
        print(f"recorded {sum(errors.values())} mypy errors in {BASELINE.name}")
        return 0
    baseline = Counter(BASELINE.read_text().splitlines()) if BASELINE.exists() else Counter()
    new = errors - baseline
    if new:
        print(f"mypy: {sum(new.values())} error(s) not in {BASELINE.name} (fix them; the baseline only shrinks):")
        for e in sorted(new.elements()):
            print(f"  {e}")
        return 1
    fixed = sum((baseline - errors).values())
    if fixed:  # a ratchet: the fixed errors leave the baseline, so they cannot come back
        print(f"mypy: {fixed} baseline error(s) fixed: record it with .venv/bin/python .ci/mypy_baseline.py --update")
        return 1
    print(f"mypy: {sum(errors.values())} known errors, none new")
    return 0


if __name__ == "__main__":
    sys.exit(main())
