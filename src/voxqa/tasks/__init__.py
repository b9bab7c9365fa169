"""Task families: each turns studies into QA items. Register new families in FAMILIES."""

from voxqa.anatomy.labelnames import midline, pair_of
from voxqa.tasks.base import BuildContext, StudyView, TaskFamily
from voxqa.tasks.captioning import Captioning
from voxqa.tasks.classification import Classification
from voxqa.tasks.counting import Counting
from voxqa.tasks.detection import Detection
from voxqa.tasks.grading import Grading
from voxqa.tasks.localization import Localization
from voxqa.tasks.spatial import Spatial

FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in (
        Detection(),
        Localization(),
        Counting(),
        Classification(),
        Captioning(),
        Spatial(midline=midline, pair_of=pair_of),
        Grading(),
    )
}

__all__ = ["FAMILIES", "BuildContext", "StudyView", "TaskFamily"]
