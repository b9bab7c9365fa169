"""``voxqa check-reports``: a report-image consistency check without building a dataset."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from voxqa.radreports.claims import Claim
from voxqa.radreports.inputs import read_reports
from voxqa.radreports.verify import verify
from voxqa.sources.segmentation import SegSpec, load_segmentation, relate


def check_reports(specs: Sequence[SegSpec], reports_path: Path, extractor) -> list[Claim]:  # noqa: ANN001 - an extractor
    """Every claim of every study's report, verified against its segmentation."""
    reports = read_reports(reports_path)
    claims: list[Claim] = []
    for spec in specs:
        rep = reports.get(spec.study_id)
        if rep is None:
            continue
        seg = load_segmentation(spec.image, spec.labels, spec.label_names, spec.assume_orientation)
        measured, g = relate(seg)
        voxels = {s.name: s.voxels for s in measured}
        claims += [verify(c, g, voxels) for c in extractor.extract(spec.study_id, rep.text, rep.language)]
    return claims
