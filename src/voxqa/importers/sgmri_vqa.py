"""SGMRI-VQA (released QA JSON + fastMRI+ CSVs [+ fastMRI .h5]) -> a voxqa dataset.

The released records (github.com/lamawmouk/SGMRI-VQA @ a37aa3d, generator
``generate_qa_gpt4o_{knee,brain}.py``): flat JSON lists of slice-level records
``volume_id, slice_num, modality, image_path, level, task, type, question, answer, reasoning,
ground_truth{labels, diagnosis, bboxes[{x, y, width, height, label}]}`` and volume-level
records ``volume_id, modality, num_slices, level, step, task, type, question, answer,
reasoning, ground_truth{final_diagnosis}`` whose boxes live only in the answer text as
``Frame N: <bbx>[x,y,w,h]</bbx>``. ``slice_num`` and ``Frame N`` are 1-based PNG numbers
(``<file>_slice_NNN.png``); boxes are pixel x, y, width, height on the up/down-flipped slice,
exactly as in fastMRI+.

Why reconcile with fastMRI+: the released knee preprocessing uses the CSV's 0-based ``slice``
as the 1-based PNG number (``knee/03_generate_json_dataset.py`` L78), so every knee box sits
one slice early, while brain adds 1. Trusting neither, every published box is looked up in the
fastMRI+ CSV by (file, label, box): a box whose 1-based frame N is annotated on 0-based slice
N - 1 is right; one annotated on slice N carries the off-by-one. The offset is decided per
volume by the boxes that fit only one reading (ambiguous boxes, e.g. the same box on two
adjacent slices, follow their volume; a volume without deciding boxes follows its anatomy),
and every box moved is counted in the build report (``repaired:
frame_off_by_one_corrected``). Frames in voxqa are then 0-based indices into
``reconstruction_rss``, the convention of ``voxqa.sources.fastmri_plus``.

Question types map to answer types: closed_ended -> yes_no (or number for counts),
single_choice -> choice, multiple_choice -> multi_choice, open_ended -> text, and
localization (any type) -> boxes. Boxes, ``Frame N`` and frame lists ("frames 7, 8 and
10-12") quoted in reasoning and text answers are rewritten into voxqa's form (``Frame k: [x0,
y0, x1, y1]``, k 0-based) so that prompts and exports quote them in the model's box profile
like every voxqa item; ``--profile sgmri`` numbers them from 1 again, as SGMRI does.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any

from voxqa.answers.options import index_of, letter as option_letter
from voxqa.boxes.geometry import clip, union_box
from voxqa.boxes.instances import LINK_RULE, link_instances
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import check_out_folder, no_gc
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError
from voxqa.importers import field, load_json, one_of, write_imported
from voxqa.io import VolumeError, probe_fastmri_h5
from voxqa.schema import Box, Box3D, Evidence, Finding, Item, Study, VolumeRef
from voxqa.sources import fastmri_plus
from voxqa.tasks.base import fmt_box, slug

NAME = "sgmri_vqa"
FORMAT = "sgmri-vqa"
#: The generator writes "slice"/"volume"; the (unreleased) loader renamed them "image_level"/"volume_level".
LEVELS = {"slice": "frame", "image_level": "frame", "volume": "volume", "volume_level": "volume"}
#: SGMRI task -> (voxqa task, subtask).
TASKS = {
    "detection": ("detection", "detection"),
    "localization": ("localization", "where"),
    "classification": ("classification", "classification"),
    "diagnosis": ("classification", "diagnosis"),
    "counting": ("counting", "count"),
    "captioning": ("captioning", "caption"),
}
TYPES = ("closed_ended", "single_choice", "multiple_choice", "open_ended")
SPLITS = {"train": "train", "val": "val", "test": "test"}
#: ``Frame N: <bbx>[x,y,w,h]</bbx>`` (the frame part optional on slice records; the few-shot
#: template writes "frame N <bbx>...", so case and the colon are free).
BBX = re.compile(
    r"(?:\bframe\s+(?P<frame>\d+)\s*:?\s*)?<bbx>\s*\[\s*(?P<v>-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3})\s*\]\s*</bbx>",
    re.IGNORECASE,
)
_RUN = r"\d+(?:\s*(?:-|–|\bto\b)\s*\d+)?"
#: a quoted box, "frames 7, 8 and 10-12" or "frame 7": every 1-based frame number a text writes
QUOTE = re.compile(BBX.pattern + rf"|\bframes\s+(?P<list>{_RUN}(?:(?:\s*,\s*|\s+and\s+){_RUN})*)"
                   r"|\bframe\s+(?P<alone>\d+)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
OPTION = re.compile(r"\(([A-J])\)\s*([^()\n]+?)(?=\s*\([A-J]\)|\s*$|\n)")
LETTER = re.compile(r"^\(?([A-J])\)?(?:[\s.:)]|$)")
KNEE_MODALITIES = ("knee",)
BRAIN_MODALITIES = ("FLAIR", "T1", "T1POST", "T2", "brain")


@dataclass
class Quoted:
    """A box as published: 1-based frame, pixel xyxy (from x, y, w, h), label if known."""

    frame1: int
    box: tuple[int, int, int, int]
    label: str | None


@dataclass
class Record:
    """One released record, checked and read (frames still as published)."""

    where: str
    volume: str
    anatomy: str
    level: str  # voxqa level: frame | volume
    task: str  # SGMRI task
    qtype: str
    question: str
    answer: str
    reasoning: str
    split: str
    slice1: int | None  # 1-based PNG number of a slice record
    num_slices: int | None
    gt_boxes: list[Quoted]  # ground_truth.bboxes of a slice record
    answer_boxes: list[Quoted]
    reasoning_boxes: list[Quoted]


@dataclass
class Reconciler:
    """fastMRI+ boxes by (file, lower-case label, xyxy box) -> their 0-based slices, and the
    files fastMRI+ reviewed."""

    slices: dict[tuple[str, str, tuple[int, int, int, int]], set[int]]
    files: set[str]

    def candidates(self, volume: str, q: Quoted) -> set[int]:
        """Offsets (0: frame N is slice N-1; 1: frame N is slice N) the CSV supports."""
        if q.label is None:
            return set()
        slices = self.slices.get((volume, q.label.lower(), q.box), set())
        return {d for d in (0, 1) if q.frame1 - 1 + d in slices}


def _anatomy(modality: str, where: str) -> str:
    if modality in KNEE_MODALITIES:
        return "knee"
    if modality in BRAIN_MODALITIES:
        return "brain"
    raise BuildError(f"{where}: field 'modality' has unknown value {modality!r} "
                     f"(known: {', '.join(KNEE_MODALITIES + BRAIN_MODALITIES)})")


def _split(path: Path, given: str | None) -> str:
    """The split a released file belongs to: its name says it (knee_val_slice_qa_pairs.json)."""
    if given is not None:
        return given
    found = {SPLITS[t] for t in re.split(r"[^a-z]+", path.stem.lower()) if t in SPLITS}
    if len(found) != 1:
        raise BuildError(f"{path}: cannot tell the split from the file name (no single train/val/test "
                         "in it); give --split")
    return found.pop()


def _label(text: str) -> str:
    return " ".join(text.split())


def _quoted_boxes(text: str, where: str, frame1: int | None, gt: Sequence[Quoted] = ()) -> list[Quoted]:
    """Boxes written ``[Frame N:] <bbx>[x,y,w,h]</bbx>`` in a text. Volume answers name the
    label before its boxes ("Meniscus Tear: Frame 15: <bbx>...; Frame 16: ..."); slice answers
    take the label of the identical ground-truth box."""
    out: list[Quoted] = []
    label: str | None = None
    last = 0
    for m in BBX.finditer(text):
        gap = text[last:m.start()].strip(" ;,\n")
        if gap.endswith(":") and frame1 is None:
            label = _label(gap.rstrip(":").split(". ")[-1])
        last = m.end()
        values = [float(v) for v in m.group("v").split(",")]
        x, y, w, h = (round(v) for v in values)
        frame = int(m.group("frame")) if m.group("frame") else frame1
        if frame is None:
            raise BuildError(f"{where}: a box in a volume-level text has no 'Frame N:' ({m.group(0)!r})")
        box = (x, y, x + w, y + h)
        name = label if frame1 is None else next((g.label for g in gt if g.box == box), None)
        out.append(Quoted(frame, box, name))
    return out


def _gt_boxes(gt: Mapping[str, Any], where: str, frame1: int) -> list[Quoted]:
    boxes = field(gt, "bboxes", where + ".ground_truth", list)
    out = []
    for n, b in enumerate(boxes):
        at = f"{where}.ground_truth.bboxes[{n}]"
        x, y, w, h = (field(b, k, at, (int, float)) for k in ("x", "y", "width", "height"))
        x, y, w, h = (round(v) for v in (x, y, w, h))
        out.append(Quoted(frame1, (x, y, x + w, y + h), _label(field(b, "label", at, str))))
    return out


def read_records(path: Path, split: str | None) -> list[Record]:
    """Every record of one released QA file, its shape checked field by field."""
    data = load_json(path, "SGMRI-VQA QA file")
    if not isinstance(data, list):
        raise BuildError(f"{path}: expected a JSON list of QA records, got {type(data).__name__}")
    the_split = _split(path, split)
    out = []
    for n, rec in enumerate(data):
        where = f"{path}[{n}]"
        level = LEVELS[one_of(rec, "level", where, tuple(LEVELS))]
        task = one_of(rec, "task", where, tuple(TASKS))
        qtype = one_of(rec, "type", where, TYPES)
        volume = field(rec, "volume_id", where, str)
        anatomy = _anatomy(field(rec, "modality", where, str), where)
        question = field(rec, "question", where, str)
        answer = field(rec, "answer", where, (str, int))
        reasoning = rec.get("reasoning") or ""
        if not isinstance(reasoning, str):
            raise BuildError(f"{where}: field 'reasoning' must be str, got {type(reasoning).__name__}")
        gt = field(rec, "ground_truth", where, dict)
        if level == "frame":
            slice1 = field(rec, "slice_num", where, int)
            if slice1 < 1:
                raise BuildError(f"{where}: field 'slice_num' is 1-based, got {slice1}")
            gt_boxes = _gt_boxes(gt, where, slice1)
            num = None
        else:
            slice1, gt_boxes = None, []
            num = field(rec, "num_slices", where, int) if "num_slices" in rec else None
        text = str(answer)
        out.append(Record(
            where=where, volume=volume, anatomy=anatomy, level=level, task=task, qtype=qtype,
            question=question, answer=text, reasoning=reasoning, split=the_split, slice1=slice1,
            num_slices=num, gt_boxes=gt_boxes,
            answer_boxes=_quoted_boxes(text, where + ".answer", slice1, gt_boxes),
            reasoning_boxes=_quoted_boxes(reasoning, where + ".reasoning", slice1, gt_boxes),
        ))
    return out


def read_fastmri_plus(annotations: Sequence[Path], file_lists: Sequence[Path], report: BuildReport) -> Reconciler:
    """fastMRI+ rows indexed by (file, lower-case label, xyxy box) -> 0-based slices. The rows'
    own repairs and drops are the fastMRI+ build's business: counted in a scratch report, of
    which only the totals are kept."""
    scratch = BuildReport()
    index: dict[tuple[str, str, tuple[int, int, int, int]], set[int]] = defaultdict(set)
    files: set[str] = set()
    for path in annotations:
        for row in fastmri_plus.read_annotations(path, scratch):
            files.add(row.file)
            if row.box is not None:
                index[(row.file, _label(row.raw_label).lower(), row.box)].add(row.slice)
    for path in file_lists:
        files.update(fastmri_plus.read_file_list(path, scratch))
    report.totals["fastmri_plus_rows_read"] = scratch.totals.get("rows_read", {})
    return Reconciler(dict(index), files)


def _offsets(records: Sequence[Record], rec: Reconciler) -> dict[str, int]:
    """Per volume: 0 (frames as published are right) or 1 (the knee off-by-one), decided by
    the boxes only one reading fits; a volume with none follows its anatomy's majority."""
    by_volume: dict[str, Counter[int]] = defaultdict(Counter)
    by_anatomy: dict[str, Counter[int]] = defaultdict(Counter)
    anatomy = {}
    for r in records:
        anatomy[r.volume] = r.anatomy
        for q in r.gt_boxes + r.answer_boxes:
            c = rec.candidates(r.volume, q)
            if len(c) == 1:
                by_volume[r.volume][next(iter(c))] += 1
                by_anatomy[r.anatomy][next(iter(c))] += 1

    def majority(c: Counter[int]) -> int | None:
        return max(sorted(c), key=lambda d: c[d]) if c else None  # a tie keeps the frames as published

    out = {}
    for vol, anat in anatomy.items():
        vote = majority(by_volume[vol])
        out[vol] = vote if vote is not None else (majority(by_anatomy[anat]) or 0)
    return out


@dataclass
class _Study:
    """What the records and the volume tell of one study while importing."""

    volume: str
    anatomy: str
    frame_size: tuple[int, int] = fastmri_plus.DEFAULT_FRAME_SIZE["knee"]  # = brain's: 320 x 320
    size_source: str = "default"
    frames: int | None = None
    frames_source: str = "unknown"
    ref: VolumeRef | None = None
    boxes: dict[str, set[tuple[int, tuple[int, int, int, int]]]] = dc_field(default_factory=lambda: defaultdict(set))


def _study_frames(records: Sequence[Record], volumes: Path | None, report: BuildReport) -> dict[str, _Study]:
    """Each volume's frame size and count: from its .h5 when given, else num_slices."""
    out: dict[str, _Study] = {}
    for r in records:
        s = out.setdefault(r.volume, _Study(r.volume, r.anatomy))
        check_study_id(r.volume, r.where + ".volume_id")
        if s.anatomy != r.anatomy:
            raise BuildError(f"{r.where}: volume {r.volume} is {r.anatomy} here but {s.anatomy} elsewhere")
        if r.num_slices is not None:
            if s.frames is not None and s.frames != r.num_slices:
                raise BuildError(f"{r.where}: field 'num_slices' {r.num_slices} contradicts {s.frames} "
                                 f"of another record of {r.volume}")
            s.frames, s.frames_source = r.num_slices, "volume"
    for s in out.values():
        h5 = volumes / f"{s.volume}.h5" if volumes else None
        if h5 is None:
            continue
        if not h5.is_file():
            report.add("info", "volume_file_missing_built_box_only", file=h5.name)
            continue
        try:
            n, height, width = probe_fastmri_h5(h5)
        except VolumeError as exc:
            report.add("skipped", "volume_unreadable_built_box_only", file=str(h5), error=str(exc))
            continue
        if s.frames is not None and s.frames != n:
            report.add("warning", "num_slices_differs_from_volume", volume=s.volume, num_slices=s.frames, volume_frames=n)
        s.frame_size, s.size_source, s.frames, s.frames_source = (width, height), "volume", n, "volume"
        s.ref = VolumeRef(path=str(h5), loader="fastmri_h5")
    return out


class _Frames:
    """Published (1-based frame, box) -> voxqa (0-based frame, clipped box), counted once per
    quoted box: corrections, boxes fastMRI+ does not hold, clips and drops."""

    def __init__(self, rec: Reconciler, offsets: dict[str, int], studies: dict[str, _Study], report: BuildReport):
        self.rec, self.offsets, self.studies, self.report = rec, offsets, studies, report
        self.corrected: set[tuple[str, int, tuple[int, int, int, int]]] = set()

    def frame(self, volume: str, frame1: int) -> int:
        return frame1 - 1 + self.offsets[volume]

    def box(self, r: Record, q: Quoted) -> tuple[int, tuple[int, int, int, int]] | None:
        """The box in voxqa's frame and pixels, or None when it is dropped (counted)."""
        s = self.studies[r.volume]
        k = self.frame(r.volume, q.frame1)
        ex = {"where": r.where, "volume": r.volume, "frame_published": q.frame1,
              "box_xywh": [q.box[0], q.box[1], q.box[2] - q.box[0], q.box[3] - q.box[1]], "label": q.label}
        if self.offsets[r.volume]:
            self.report.add("repaired", "frame_off_by_one_corrected", anatomy=r.anatomy, frame=k, **ex)
            self.corrected.add((r.volume, k, q.box))
        if r.volume not in self.rec.files:
            self.report.add("info", "volume_not_in_fastmri_plus", **ex)
        elif self.offsets[r.volume] not in self.rec.candidates(r.volume, q):
            self.report.add("warning", "box_not_in_fastmri_plus", frame=k, **ex)
        x0, y0, x1, y1 = q.box
        if x1 <= x0 or y1 <= y0:
            self.report.add("dropped", "zero_area_box", **ex)
            return None
        if s.frames_source == "volume" and s.frames is not None and not 0 <= k < s.frames:
            self.report.add("dropped", "frame_out_of_range", frames=s.frames, frame=k, **ex)
            return None
        clipped = clip(q.box, *s.frame_size)
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            self.report.add("dropped", "box_outside_frame", **ex)
            return None
        if clipped != q.box:
            self.report.add("repaired", "box_clipped", to=list(clipped), **ex)
        if q.label is not None:
            s.boxes[q.label].add((k, clipped))
        return k, clipped


def _rewrite(text: str, r: Record, frames: _Frames, boxes: dict[tuple[int, tuple], tuple[int, tuple]]) -> str:
    """Published box quotes and 1-based frame numbers in voxqa's form, in one pass: ``Frame k:
    [x0, y0, x1, y1]`` with k the corrected 0-based frame (a dropped box is left as published),
    and every frame number of "frame N" and "frames 7, 8 and 10-12" likewise."""
    def one(m: re.Match[str]) -> str:
        if m.group("list") is not None:  # "frames 7, 8 and 10-12"
            numbers = _NUMBER.sub(lambda n: str(frames.frame(r.volume, int(n[0]))), m.group("list"))
            return m.group(0)[: m.start("list") - m.start()] + numbers
        if m.group("v") is None:  # a frame number alone
            return f"{m.group(0)[:5]} {frames.frame(r.volume, int(m.group('alone')))}"
        frame1 = int(m.group("frame")) if m.group("frame") else r.slice1
        x, y, w, h = (round(float(v)) for v in m.group("v").split(","))
        got = boxes.get((frame1, (x, y, x + w, y + h)))
        if got is None:
            return m.group(0)
        return (f"{m.group(0)[:5]} {got[0]}: " if m.group("frame") else "") + fmt_box(got[1])

    return QUOTE.sub(one, text)


def _options(question: str, where: str) -> list[str]:
    opts = [(letter, _label(text)) for letter, text in OPTION.findall(question)]
    letters = [letter for letter, _ in opts]
    if not opts or letters != [option_letter(i) for i in range(len(opts))]:
        raise BuildError(f"{where}: field 'question' has no options '(A) ... (B) ...' in order")
    return [text for _, text in opts]


def _letters(answer: str, n: int, where: str, multi: bool) -> list[int]:
    parts = [p.strip() for p in re.split(r"[,;]|\band\b", answer)] if multi else [answer.strip()]
    out = []
    for p in parts:
        m = LETTER.match(p)
        if not m or index_of(m.group(1)) >= n:
            raise BuildError(f"{where}: field 'answer' {answer!r} is not an option letter of the question")
        out.append(index_of(m.group(1)))
    return sorted(set(out))


def _answer(r: Record, located: list[tuple[int, tuple[int, int, int, int]]], text: str) -> tuple[dict, float | None]:
    """The typed answer and its chance."""
    where = r.where
    if r.task == "localization":
        return {"type": "boxes", "value": [{"frame": k, "box": list(b)} for k, b in located]}, None
    if r.qtype == "closed_ended":
        word = r.answer.strip().rstrip(".").lower()
        if word in ("yes", "no"):
            return {"type": "yes_no", "value": word}, 0.5
        if re.fullmatch(r"\d+", word):
            return {"type": "number", "value": int(word)}, None
        raise BuildError(f"{where}: field 'answer' {r.answer!r} of a closed_ended question is neither yes/no nor a count")
    if r.qtype == "single_choice":
        options = _options(r.question, where)
        return {"type": "choice", "value": _letters(r.answer, len(options), where, False)[0]}, 1 / len(options)
    if r.qtype == "multiple_choice":
        options = _options(r.question, where)
        return {"type": "multi_choice", "value": _letters(r.answer, len(options), where, True)}, 1 / (2 ** len(options) - 1)
    return {"type": "text", "value": text}, None


def _item(r: Record, frames: _Frames) -> Item | None:
    """One voxqa item of a record (None when a localization record lost all its boxes)."""
    frame = frames.frame(r.volume, r.slice1) if r.slice1 is not None else None
    if frame is not None and frame < 0:
        frames.report.add("dropped", "record_frame_before_volume", where=r.where, slice_num=r.slice1)
        return None
    placed: dict[tuple[int, tuple], tuple[int, tuple]] = {}
    for q in r.gt_boxes + r.answer_boxes + r.reasoning_boxes:
        if (q.frame1, q.box) not in placed:
            got = frames.box(r, q)
            if got is not None:
                placed[(q.frame1, q.box)] = got
    located = [placed[(q.frame1, q.box)] for q in (r.answer_boxes or r.gt_boxes) if (q.frame1, q.box) in placed]
    located = sorted(set(located))
    if r.task == "localization" and not located:
        frames.report.add("dropped", "localization_record_without_boxes", where=r.where)
        return None
    evidence_q = r.answer_boxes if r.task == "localization" else r.gt_boxes + r.answer_boxes
    evidence = sorted({(placed[(q.frame1, q.box)], q.label or "finding") for q in evidence_q
                       if (q.frame1, q.box) in placed})
    answer_text = _rewrite(r.answer, r, frames, placed)
    answer, chance = _answer(r, located, answer_text)
    asked = {q.label for q in r.answer_boxes} if r.task == "localization" else set()
    task, subtask = TASKS[r.task]
    digest = hashlib.sha1("\x1f".join((r.level, r.task, r.qtype, r.question, r.answer)).encode()).hexdigest()[:10]
    where = "v" if frame is None else f"f{frame}"
    options = _options(r.question, r.where) if r.qtype in ("single_choice", "multiple_choice") \
        and r.task != "localization" else None
    return Item(
        id=f"{r.volume}:sgmri-{slug(r.task)}:{where}:{digest}",
        study_id=r.volume,
        split=r.split,  # type: ignore[arg-type]
        source=NAME,
        task=task,  # type: ignore[arg-type]
        subtask=subtask,
        level=r.level,  # type: ignore[arg-type]
        frames=[] if frame is None else [frame],
        question=_rewrite(_strip_options(r.question) if options else r.question, r, frames, placed),
        options=options,
        answer=answer,  # type: ignore[arg-type]
        answer_text=answer_text,
        evidence=[Evidence(label=lab, frame=k, box=b) for (k, b), lab in evidence],
        reasoning=_rewrite(r.reasoning, r, frames, placed),
        chance=chance,
        label=asked.pop() if len(asked) == 1 and None not in asked else None,
        template=f"sgmri/{r.task}/{r.qtype}/{r.level}",
    )


def _strip_options(question: str) -> str:
    """The question without its "(A) ..." options (voxqa lists options itself)."""
    first = OPTION.search(question)
    return question[: first.start()].rstrip() if first else question


def _studies(states: dict[str, _Study], split: dict[str, str]) -> list[Study]:
    """One Study per volume; its findings are the imported boxes linked into instances."""
    out = []
    for vol in sorted(states):
        s = states[vol]
        findings = []
        for label in sorted(s.boxes):
            members = sorted(s.boxes[label])
            ids = link_instances(members)
            for inst in range(max(ids) + 1):
                bxs = [Box(frame=k, box=b) for (k, b), i in zip(members, ids, strict=False) if i == inst]
                findings.append(Finding(
                    label=label, raw_label=label, boxes=bxs, instance_id=inst,
                    box3d=Box3D(frame_start=bxs[0].frame, frame_end=bxs[-1].frame,
                                box=union_box([b.box for b in bxs])),
                ))
        box_frames = [b.frame for f in findings for b in f.boxes]
        count, source = s.frames, s.frames_source
        if count is None and box_frames:
            count, source = max(box_frames) + 1, "annotations_lower_bound"
        out.append(Study(
            id=vol, patient_id=vol, source=NAME, modality="MR", anatomy=s.anatomy, volume=s.ref,
            shape=(count, s.frame_size[1], s.frame_size[0]) if s.ref is not None and count else None,
            view_axis=0, frame_count=count, frame_count_source=source,  # type: ignore[arg-type]
            frame_size=s.frame_size, frame_size_source=s.size_source,  # type: ignore[arg-type]
            findings=findings, split=split[vol],  # type: ignore[arg-type]
        ))
    return out


def import_sgmri_vqa(qa: Sequence[Path], annotations: Sequence[Path], out: Path, *,
                     file_lists: Sequence[Path] = (), volumes: Path | None = None,
                     split: str | None = None, strict: bool = False) -> dict[str, Any]:
    """Import released SGMRI-VQA QA files, reconciled with the fastMRI+ CSVs; returns the manifest."""
    if not qa:
        raise BuildError("give at least one --qa file")
    if not annotations:
        raise BuildError("give the fastMRI+ --annotations CSV(s): every box is reconciled with them")
    if split is not None and split not in SPLITS:
        raise BuildError(f"--split must be train, val or test, got {split!r}")
    check_out_folder(out)
    with no_gc():
        report = BuildReport(strict=strict)
        records = [r for path in qa for r in read_records(path, split)]
        if not records:
            raise BuildError(f"{', '.join(map(str, qa))}: no QA records")
        reconciler = read_fastmri_plus(annotations, file_lists, report)
        offsets = _offsets(records, reconciler)
        states = _study_frames(records, volumes, report)
        frames = _Frames(reconciler, offsets, states, report)
        seen: dict[tuple, str] = {}
        items: list[Item] = []
        volume_split: dict[str, str] = {}
        for r in records:
            key = (r.volume, r.level, r.slice1, r.task, r.qtype, r.question, r.answer)
            if key in seen:
                report.add("dropped", "duplicate_record", where=r.where, same_as=seen[key])
                continue
            seen[key] = r.where
            if volume_split.setdefault(r.volume, r.split) != r.split:
                raise BuildError(f"{r.where}: volume {r.volume} is in split {r.split} here and "
                                 f"{volume_split[r.volume]} in another file")
            it = _item(r, frames)
            if it is not None:
                items.append(it)
        report.totals |= {
            "records_read": len(records),
            "items": len(items),
            "boxes_frame_corrected_distinct": len(frames.corrected),
            "volumes_off_by_one": sorted(v for v, d in offsets.items() if d),
        }
        studies = _studies(states, volume_split)
        files = [(p, "qa") for p in qa] + [(p, "annotations") for p in annotations] + [(p, "file_list") for p in file_lists]
        return write_imported(
            out, name="sgmri-vqa", source=NAME, command="voxqa import sgmri-vqa",
            options={"qa": [str(p) for p in qa], "annotations": [str(p) for p in annotations],
                     "file_lists": [str(p) for p in file_lists], "volumes": str(volumes) if volumes else None,
                     "split": split, "strict": strict},
            files=files, studies=studies, items=items, report=report,
            extra={
                "box_convention_published": {
                    "format": "pixel x, y, width, height inline as <bbx>[x,y,w,h]</bbx>",
                    "frames": "1-based PNG numbers (Frame N = reconstruction_rss[N - 1]); knee released "
                              "with the off-by-one (Frame N = reconstruction_rss[N]), corrected here",
                },
                "frame_offsets": {"rule": "per volume, from the boxes only one reading of fastMRI+ fits; "
                                          "otherwise the anatomy's majority",
                                  "off_by_one_volumes": sum(1 for d in offsets.values() if d),
                                  "volumes": len(offsets)},
                "instance_linking": LINK_RULE,
                "frame_orientation": "reconstruction_rss flipped up/down (img[:, ::-1, :]), as fastMRI+",
            },
        )
