"""Every source ``voxqa build`` knows, under its command name (``voxqa build NAME``)."""

from voxqa.sources.base import Source
from voxqa.sources.fastmri_plus import FastMRIPlus
from voxqa.sources.knee import KneeGrading
from voxqa.sources.radreports import RadiologyReports
from voxqa.sources.segmentation import SegmentationSource

SOURCES: dict[str, type[Source]] = {
    s.command: s for s in (FastMRIPlus, SegmentationSource, KneeGrading, RadiologyReports)
}
