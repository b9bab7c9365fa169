"""The margins that make a spatial relation unambiguous enough to ask (or a report claim
verifiable): one frozen record, read by the questions and written to the manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class SpatialMargins:
    """Field names are the manifest's ``spatial_margins`` keys."""

    #: centroids at least this far apart along the asked axis
    min_centroid_separation_mm: float = 10.0
    #: extents along the asked axis may overlap by at most this much
    max_extent_overlap_mm: float = 5.0
    #: two structures "touch" when their voxels come this close
    touch_tolerance_mm: float = 3.0
    #: "which is larger": the larger at least 20% larger
    min_size_ratio: float = 1.2
    #: "which side is larger" for paired organs: at least 10% larger
    min_paired_size_ratio: float = 1.1
    #: relative tolerance accepted for a volume in mL
    volume_relative_tolerance: float = 0.10
    #: smaller structures (often segmentation specks) are not asked about
    min_structure_voxels: int = 8

    def manifest(self, *only: str) -> dict[str, Any]:
        """The manifest's ``spatial_margins`` entry: every margin, or the ``only`` ones a
        source uses."""
        values = asdict(self)
        return {k: values[k] for k in only} if only else values


MARGINS = SpatialMargins()
