"""The voxqa data model: studies, findings and QA items (pydantic v2).

Everything that crosses a module boundary or lands on disk is one of these models, so a
dataset folder can be validated line by line by anyone holding this file.

Boxes are always canonical here: pixel ``[x_min, y_min, x_max, y_max]`` on the stored frame,
max exclusive (so ``x_max - x_min`` is the width in pixels). Conversion to a model's
convention happens at render/export time, never here.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

Split = Literal["train", "val", "test"]
Task = Literal[
    "detection", "localization", "counting", "classification", "captioning", "spatial", "grading"
]
Level = Literal["frame", "volume"]


class Model(BaseModel):
    """Strict base: unknown fields are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class Box(Model):
    """A canonical 2D box on one frame: pixel xyxy, max exclusive."""

    frame: int = Field(ge=0, description="0-based frame index along the study's view axis")
    box: tuple[int, int, int, int]

    @field_validator("box")
    @classmethod
    def _positive_area(cls, v: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = v
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"box {list(v)} has no area (need x_max > x_min and y_max > y_min)")
        return v


class Box3D(Model):
    """A 3D box in frame/pixel space: frames [start, end] inclusive, pixels max exclusive."""

    frame_start: int = Field(ge=0)
    frame_end: int = Field(ge=0)
    box: tuple[int, int, int, int]

    @model_validator(mode="after")
    def _ordered(self) -> Box3D:
        if self.frame_end < self.frame_start:
            raise ValueError("frame_end < frame_start")
        return self


class Finding(Model):
    """One finding of a study: a lesion instance (boxes linked across frames) or a study label."""

    label: str = Field(description="whitespace-normalised label with canonical casing")
    raw_label: str = Field(description="the label exactly as in the source")
    boxes: list[Box] = Field(default_factory=list)
    box3d: Box3D | None = None
    instance_id: int | None = Field(
        default=None, description="per (study, label) instance number; None for study-level labels"
    )
    study_level: bool = False
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @property
    def frames(self) -> list[int]:
        return sorted({b.frame for b in self.boxes})


class VolumeRef(Model):
    """Where the pixels live and which reader opens them (None for box-only studies)."""

    path: str
    loader: str
    mirrored: bool = Field(
        default=False,
        description="show the volume flipped along patient x (affine kept): a counterfactual twin",
    )
    assumed_orientation: str | None = Field(
        default=None,
        description="axis codes (e.g. LPS) the user gave for a file that states no orientation",
    )


class Study(Model):
    """One volume with its annotations; the unit of splitting."""

    id: str
    patient_id: str
    source: str
    modality: str
    anatomy: str
    volume: VolumeRef | None = None
    shape: tuple[int, ...] | None = Field(default=None, description="array shape, when known")
    spacing: tuple[float, ...] | None = None
    affine: list[list[float]] | None = Field(default=None, description="voxel -> RAS+ mm, if known")
    view_axis: int = Field(description="array axis along which frames are taken")
    frame_count: int | None = Field(
        default=None, description="number of frames along view_axis; None when unknown"
    )
    frame_count_source: Literal["volume", "annotations_lower_bound", "unknown"] = "unknown"
    frame_size: tuple[int, int] = Field(description="(width, height) of one frame in pixels")
    frame_size_source: Literal["volume", "default"]
    findings: list[Finding] = Field(default_factory=list)
    split: Split | None = None

    def known_frames(self) -> range:
        """Frames that certainly exist (frame_count is a lower bound for box-only studies)."""
        return range(self.frame_count or 0)


# --- typed answers: one model per answer kind -------------------------------------------------


class YesNoAnswer(Model):
    type: Literal["yes_no"] = "yes_no"
    value: Literal["yes", "no"]


class ChoiceAnswer(Model):
    """Single choice: ``value`` is the 0-based index into the item's options."""

    type: Literal["choice"] = "choice"
    value: int = Field(ge=0)


class MultiChoiceAnswer(Model):
    """Select all that apply: sorted 0-based option indices."""

    type: Literal["multi_choice"] = "multi_choice"
    value: list[int]


class NumberAnswer(Model):
    type: Literal["number"] = "number"
    value: int | float
    tolerance: float = Field(default=0.0, description="absolute tolerance accepted as correct")


class FramesAnswer(Model):
    type: Literal["frames"] = "frames"
    value: list[int]


class KeywordBox(Box):
    """A box that grounds a keyword (report grounding, RadGrounder-style): the keyword as the
    question names it, kept with its box so scoring can pair them (G-IoU)."""

    keyword: str = Field(min_length=1)


class BoxesAnswer(Model):
    """Frame-indexed boxes: ``value`` lists {frame, box} in canonical pixels; grounding items
    list {frame, box, keyword} (``KeywordBox``) and are also scored by keyword-box pairs."""

    type: Literal["boxes"] = "boxes"
    value: list[KeywordBox | Box]


class Box3DAnswer(Model):
    type: Literal["box3d"] = "box3d"
    value: Box3D


class TextAnswer(Model):
    type: Literal["text"] = "text"
    value: str


class GradeAnswer(Model):
    type: Literal["grade"] = "grade"
    value: int
    scale: list[int] = Field(default_factory=list)


Answer = Annotated[
    Union[
        YesNoAnswer,
        ChoiceAnswer,
        MultiChoiceAnswer,
        NumberAnswer,
        FramesAnswer,
        BoxesAnswer,
        Box3DAnswer,
        TextAnswer,
        GradeAnswer,
    ],
    Field(discriminator="type"),
]


class Evidence(Model):
    """A frame-indexed box that supports an answer (canonical pixels of the stored frame)."""

    label: str
    frame: int = Field(ge=0)
    box: tuple[int, int, int, int]
    instance: int | None = Field(default=None, description="instance id the box belongs to")
    image_box: tuple[int, int, int, int] | None = Field(
        default=None, description="the box in pixels of its rendered image (after `voxqa render`)"
    )


class ImageRef(Model):
    """A rendered frame an item shows (after `voxqa render`)."""

    path: str = Field(description="PNG path relative to the dataset folder")
    frame: int = Field(ge=0, description="original 0-based frame index")
    width: int
    height: int


class Item(Model):
    """One QA item as written to items.jsonl."""

    id: str
    study_id: str
    split: Split
    source: str
    task: Task
    subtask: str
    level: Level
    frames: list[int] = Field(
        description="0-based frames the question is about; [] for volume-level items (whole volume)"
    )
    question: str
    options: list[str] | None = None
    answer: Answer
    answer_text: str
    evidence: list[Evidence] = Field(default_factory=list)
    reasoning: str
    chance: float | None = Field(default=None, description="P(uniform random answer is right)")
    label: str | None = Field(default=None, description="the finding asked about, if any")
    template: str = Field(description="question template id, for answer-balance checks")
    category: str | None = Field(
        default=None, description="CT-SpatialVQA category name, for spatial items"
    )
    images: list[ImageRef] | None = Field(
        default=None, description="rendered frames shown with the question, in frame order"
    )
    variant: Literal["original", "mirrored"] | None = Field(
        default=None,
        description="counterfactual pairs: 'original', or 'mirrored' (the study flipped along "
        "patient x, answers recomputed); None for items without a twin",
    )
    pair_id: str | None = Field(
        default=None, description="shared by an item and its mirrored twin (same question text)"
    )
    prior_answerable: bool = Field(
        default=False,
        description="answerable from anatomical knowledge alone (normal anatomy): scored as its "
        "own group and left out of headline numbers",
    )
    language: str | None = Field(
        default=None,
        description="language of the question and answer (e.g. 'de' for items from German "
        "reports); None: English. Left out of items.jsonl when None, so older datasets stay "
        "byte-identical",
    )

    region: Box3D | None = Field(
        default=None,
        description="the 3D box (frames inclusive, pixels of the stored frame) of the region the "
        "question asks about, chosen without the answer: what GT-region mode (oracle_region) gives "
        "a grading item; None: the item carries no region",
    )
    guided_question: str | None = Field(
        default=None,
        description="the question as guided mode asks it (3DReasonKnee's guided instructions: the "
        "released guided template, or the question followed by the feature's released guidance); "
        "None: guided mode asks `question`",
    )
    json_path: list[str] | None = Field(
        default=None,
        description="keys from the top of the benchmark's own reply JSON to this item's answer "
        "(3DReasonKnee's MOAKS JSON, which its released question states): a reply in that form "
        "is read there; None: voxqa's reply forms only",
    )

    @model_serializer(mode="wrap")
    def _omit_default_language(self, handler):  # noqa: ANN001, ANN202 - pydantic's serializer hook
        data = handler(self)
        if isinstance(data, dict):
            for key in OMITTED_WHEN_NONE:
                if data.get(key) is None:
                    data.pop(key, None)
        return data


#: Item fields left out of items.jsonl when unset, so datasets without them stay byte-identical.
OMITTED_WHEN_NONE = ("language", "region", "guided_question", "json_path")
