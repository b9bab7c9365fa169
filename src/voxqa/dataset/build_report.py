"""Build report: every repair, drop and skip is counted, with a few examples each.

A build never silently loses data: each reason has a counter and up to
``MAX_EXAMPLES`` examples (file, row, detail) so a user can find the offending input.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from voxqa.errors import BuildError

MAX_EXAMPLES = 5
FATAL_UNDER_STRICT = ("dropped", "skipped")


class BuildReport:
    """Counters grouped by kind ("repaired", "dropped", "skipped", "info")."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self._counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._examples: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.totals: dict[str, Any] = {}

    def add(self, kind: str, reason: str, n: int = 1, **example: Any) -> None:
        """Count ``n`` events; under --strict a drop or skip stops the build instead."""
        if self.strict and kind in FATAL_UNDER_STRICT:
            where = example.get("where")
            rest = ", ".join(f"{k} {_plain(v)}" for k, v in example.items() if k != "where")
            raise BuildError(f"--strict: {where + ': ' if where else ''}{kind} ({reason})"
                             + (f": {rest}" if rest else ""))
        self._counts[kind][reason] += n
        if example and len(self._examples[kind][reason]) < MAX_EXAMPLES:
            self._examples[kind][reason].append(example)

    def count(self, kind: str, reason: str) -> int:
        return self._counts.get(kind, {}).get(reason, 0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"totals": self.totals}
        for kind in sorted(self._counts):
            out[kind] = {
                reason: {"count": n, "examples": self._examples[kind].get(reason, [])}
                for reason, n in sorted(self._counts[kind].items())
            }
        return out


#: Report kinds that make a build a partial success, in the order the warning line names them.
PARTIAL_KINDS = ("skipped", "dropped", "warning")
#: Info reasons that are a partial success too (a volume asked for but not there).
PARTIAL_INFO = ("volume_file_missing_built_box_only",)


def partial_summary(report: dict[str, Any]) -> str | None:
    """What a build left out, in one line ("1 skipped (study_unreadable 1); ..."), or None.

    ``report`` is ``BuildReport.to_dict()`` (build_report.json).
    """
    parts = []
    for kind in PARTIAL_KINDS:
        reasons = {r: v["count"] for r, v in report.get(kind, {}).items()}
        if kind == "skipped":
            reasons |= {r: v["count"] for r, v in report.get("info", {}).items() if r in PARTIAL_INFO}
        if reasons:
            detail = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items()))
            parts.append(f"{sum(reasons.values())} {kind} ({detail})")
    return "; ".join(parts) or None


def _plain(value: Any) -> str:
    """A value as a person writes it (no Python reprs: lists as [a, b], text unquoted)."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return str(value)
