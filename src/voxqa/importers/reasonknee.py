"""3DReasonKnee / ReasonKnee-Bench (released question files + MOAKS JSON answers + split CSVs
[+ OAI DESS NIfTI]) -> knee grading items.

Released files (github.com/rajpurkarlab/3DReasonKnee @ bcc32ba and HF rajpurkarlab/3DReasonKnee):

* ``data/question_files/questions_nobbox_{zeroshot,guided}.json``: 69 templates keyed "1".."69",
  each ending with the JSON its answer must take, e.g. ``{"MOAKS_scores": {"patella medial
  BML": {"Size of BML (including cyst)": (grade from 0-3), ...}}}``;
* answer records as the released SFT code reads them, ``{image, prompt, answer}``, the answer a
  MOAKS JSON string; ``question_id`` (or the released output key
  ``<patient_id>_<time>_<study_folder>_<series_folder>_<knee_side>_<question_id>``, or a prompt
  equal to a template) names the template;
* split CSVs ``patient_id, time, study_folder, series_folder, knee_side, image_filepath,
  label_filepath``.

The repository has no metric code, so nothing "as published" is re-enacted here. Each answer
is checked against its template's JSON shape: the same keys, each leaf an integer on the
template's scale ("(grade from 0-3)", "(0 | 1)", "(0-3)"); anything else is refused naming the
key path, as a guessed reading could grade the wrong component. Templates whose answer JSON
is garbled in the release (Q58/59, bbox-stripped) cannot be checked: their records are dropped
and counted. The released inconsistency of extrusion grades (Q44/45 a bare grade, Q46/47
``{"grade": g}``) is read as written by the template.

One voxqa item per graded component (task ``grading``): a 0/1 component is a yes/no item, any
other a ``grade`` item with its scale. Components that ``voxqa.anatomy.knee`` names (the MOAKS
feature table of the knee grading family) get its feature name as subtask and its region as
label, so a reply in 3DReasonKnee's MOAKS JSON is parsed to the right entry; the rest keep the
released key words. The component's MOAKS JSON, in the released form, is the item's
``answer_text`` (the target exports keep).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxqa.anatomy.frames import SAGITTAL_VIEW_AXIS
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import check_out_folder, no_gc
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError, not_utf8
from voxqa.importers import field, load_json, ras_shape, volume_file, write_imported
from voxqa.schema import Item, Study, VolumeRef
from voxqa.anatomy.knee import FEATURES, JOINT, region_name
from voxqa.sources.knee import DEFAULT_FRAME_SIZE
from voxqa.tasks.base import slug

NAME = "reasonknee"
FORMAT = "reasonknee"
SPLIT_COLUMNS = ("patient_id", "time", "study_folder", "series_folder", "knee_side", "image_filepath", "label_filepath")
TEMPLATES = 69
_SCALES = (
    (re.compile(r"\(grade from (\d+)-(\d+)\)"), lambda m: (int(m.group(1)), int(m.group(2)))),
    (re.compile(r"\(?\b0 \| 1\b\)?"), lambda m: (0, 1)),
    (re.compile(r"\((\d+)-(\d+)\)"), lambda m: (int(m.group(1)), int(m.group(2)))),
)
_SCALE_KEY = "__scale__"
MOAKS_WRAPPERS = ("MOAKS_scores", "MOAKS_grade")


@dataclass(frozen=True)
class Component:
    """One graded leaf of a template's answer JSON."""

    path: tuple[str, ...]  # keys from the top of the answer JSON to the leaf
    scale: tuple[int, ...]


def answer_shape(template: str) -> dict[str, Any] | None:
    """The template's answer JSON with each placeholder replaced by its scale, or None when
    the template ends in no parseable JSON (Q58/59 of the release)."""
    text = template.rstrip().rstrip(".'\"").rstrip()
    for pattern, scale in _SCALES:
        text = pattern.sub(lambda m, s=scale: json.dumps({_SCALE_KEY: list(range(s(m)[0], s(m)[1] + 1))}), text)
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value = json.loads(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def components(shape: dict[str, Any], path: tuple[str, ...] = ()) -> list[Component]:
    out = []
    for key, value in shape.items():
        if isinstance(value, dict) and _SCALE_KEY in value:
            out.append(Component(path + (key,), tuple(value[_SCALE_KEY])))
        elif isinstance(value, dict):
            out += components(value, path + (key,))
        else:
            raise BuildError(f"template answer JSON has a value that is not a grade placeholder at {'.'.join(path + (key,))}")
    return out


def read_templates(path: Path) -> dict[str, tuple[str, list[Component] | None]]:
    """question id -> (template text, its components; None when its answer JSON is garbled)."""
    data = load_json(path, "3DReasonKnee question file")
    if not isinstance(data, dict) or not data:
        raise BuildError(f"{path}: expected a JSON object of templates keyed '1'..'{TEMPLATES}'")
    out: dict[str, tuple[str, list[Component] | None]] = {}
    for qid, text in data.items():
        if not isinstance(text, str):
            raise BuildError(f"{path}[{qid!r}]: a template must be a string, got {type(text).__name__}")
        shape = answer_shape(text)
        out[qid] = (text, components(shape) if shape is not None else None)
    return out


def _leaf(answer: Any, comp: Component, where: str) -> int:
    value = answer
    for n, key in enumerate(comp.path):
        if not isinstance(value, dict) or key not in value:
            raise BuildError(f"{where}: answer lacks {'.'.join(comp.path[: n + 1])!r} that the template asks for")
        value = value[key]
    if not isinstance(value, int) or isinstance(value, bool) or value not in comp.scale:
        raise BuildError(f"{where}: answer field {'.'.join(comp.path)!r} = {value!r} is not a grade on the "
                         f"template's scale {list(comp.scale)}")
    return value


def _paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, path + (k,))]
    return [path]


@dataclass
class Split:
    study_id: str
    patient_id: str
    split: str
    image: str


def read_splits(paths: Sequence[Path], report: BuildReport) -> dict[str, Split]:
    """image path -> its study (the released key without the question id) and split; the split
    is the file name's train/val/test (test_balanced is test)."""
    out: dict[str, Split] = {}
    for path in paths:
        if not path.is_file():
            raise BuildError(f"{path}: split CSV not found")
        tokens = set(re.split(r"[^a-z]+", path.stem.lower()))
        named = [s for s in ("train", "val", "test") if s in tokens]
        if len(named) != 1:
            report.add("info", "split_not_in_file_name_used_test", file=str(path))
        split = named[0] if len(named) == 1 else "test"
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            try:
                missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    raise BuildError(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(reader.fieldnames or [])})")
                for row in reader:
                    where = f"{path}:{reader.line_num}"
                    sid = "_".join(row[c].strip() for c in SPLIT_COLUMNS[:5])
                    out[row["image_filepath"].strip()] = Split(check_study_id(sid, where), row["patient_id"].strip(),
                                                               split, row["image_filepath"].strip())
            except csv.Error as exc:  # a field over the csv module's 131,072-character limit, a NUL byte
                raise BuildError(f"{path}:{reader.reader.line_num}: not a readable split CSV row ({exc})") from None
            except UnicodeDecodeError as exc:
                raise BuildError(f"{path}: {not_utf8(exc)}") from None
    return out


def _feature(comp: Component) -> tuple[str, str]:
    """(subtask, label) of a component: the knee family's feature and region when its table
    names them, else the released key words."""
    keys = [k for k in comp.path if k not in MOAKS_WRAPPERS]
    group, component = keys[0], keys[1] if len(keys) > 1 else None
    for f in FEATURES.values():
        if group.lower().endswith(f.group.lower()) and (f.component == component or f.component is None
                                                        and component in (None, "grade")):
            words = group[: len(group) - len(f.group)].strip()
            region = JOINT if not words and f.regions == (JOINT,) else region_name(words) if words else None
            if region is not None and region in f.regions:
                return f.name, region
    return slug(" ".join(keys)).replace("-", "_"), " ".join(keys)


def _volume(image: str, root: Path | None, report: BuildReport) -> tuple[VolumeRef | None, int | None, tuple[int, int], str]:
    if root is None:
        return None, None, DEFAULT_FRAME_SIZE, "default"
    path = volume_file(root, [image], report)
    if path is None:
        return None, None, DEFAULT_FRAME_SIZE, "default"
    shape = ras_shape(path)
    return VolumeRef(path=str(path), loader="nifti"), shape[0], (shape[1], shape[2]), "volume"


def import_reasonknee(questions: Path, answers: Path, out: Path, *, splits: Sequence[Path] = (),
                      volumes_root: Path | None = None, strict: bool = False) -> dict[str, Any]:
    """Import released MOAKS answers as grading items; returns the manifest."""
    check_out_folder(out)
    with no_gc():
        report = BuildReport(strict=strict)
        templates = read_templates(questions)
        by_prompt = {text: qid for qid, (text, _) in templates.items()}
        studies_of = read_splits(splits, report)
        records = load_json(answers, "3DReasonKnee answer file")
        if not isinstance(records, list):
            raise BuildError(f"{answers}: expected a JSON list of answer records, got {type(records).__name__}")
        studies: dict[str, Study] = {}
        items: list[Item] = []
        for n, rec in enumerate(records):
            where = f"{answers}[{n}]"
            image = field(rec, "image", where, str)
            qid = _question_id(rec, where, by_prompt)
            if qid not in templates:
                raise BuildError(f"{where}: field 'question_id' {qid!r} names no template of {questions}")
            text, comps = templates[qid]
            if comps is None:
                report.add("dropped", "template_answer_json_garbled", where=where, question_id=qid)
                continue
            raw = field(rec, "answer", where, (str, dict))
            try:
                answer = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError as exc:
                raise BuildError(f"{where}: field 'answer' is not MOAKS JSON ({exc})") from None
            extra = sorted(set(_paths(answer)) - {c.path for c in comps})
            if extra:
                raise BuildError(f"{where}: answer field {'.'.join(extra[0])!r} is not in template {qid}'s answer JSON")
            info = studies_of.get(image)
            if info is None:
                sid = _study_from_key(rec, qid, image, where)
                info = Split(sid, sid.split("_")[0], "test", image)
                if splits:
                    report.add("warning", "image_not_in_split_csvs_used_test", where=where, image=image)
            if info.study_id not in studies:
                ref, frames, size, src = _volume(image, volumes_root, report)
                studies[info.study_id] = Study(
                    id=info.study_id, patient_id=info.patient_id, source=NAME, modality="MR", anatomy="knee",
                    volume=ref, view_axis=SAGITTAL_VIEW_AXIS, frame_count=frames,
                    frame_count_source="volume" if frames else "unknown", frame_size=size,
                    frame_size_source=src, split=info.split,  # type: ignore[arg-type]
                )
            intro = text.split("Provide your reasoning")[0].strip()
            for comp in comps:
                items.append(_item(info, qid, intro, comp, _leaf(answer, comp, where), answer))
        report.totals |= {"records_read": len(records), "items": len(items), "studies": len(studies)}
        files = [(questions, "questions"), (answers, "answers")] + [(p, "split") for p in splits]
        return write_imported(
            out, name="reasonknee", source=NAME, command="voxqa import reasonknee",
            options={"questions": str(questions), "answers": str(answers), "splits": [str(p) for p in splits],
                     "volumes_root": str(volumes_root) if volumes_root else None, "strict": strict},
            files=files, studies=list(studies.values()), items=items, report=report,
            extra={"frames": "sagittal (voxqa.anatomy.frames.SAGITTAL_FRAME_CONVENTION)",
                   "metric": "3DReasonKnee released no metric code: voxqa's grade metrics (accuracy, MAE, QWK)"},
        )


def _question_id(rec: Any, where: str, by_prompt: dict[str, str]) -> str:
    """The template of a record: ``question_id``, else the released key's last part, else the
    template its prompt is."""
    if "question_id" in rec:
        return str(field(rec, "question_id", where, (str, int)))
    if "key" in rec:
        return field(rec, "key", where, str).rsplit("_", 1)[-1]
    prompt = rec.get("prompt")
    if isinstance(prompt, str) and prompt in by_prompt:
        return by_prompt[prompt]
    raise BuildError(f"{where}: missing field 'question_id' (and no 'key' or template 'prompt' to take it from)")


def _study_from_key(rec: Any, qid: str, image: str, where: str) -> str:
    key = rec.get("key")
    if isinstance(key, str) and key.endswith(f"_{qid}"):
        return check_study_id(key[: -len(qid) - 1], where + ".key")
    stem = Path(image).name.split(".nii")[0]
    return check_study_id(stem, where + ".image")


def _item(info: Split, qid: str, intro: str, comp: Component, grade: int, answer: dict[str, Any]) -> Item:
    subtask, label = _feature(comp)
    keys = [k for k in comp.path if k not in MOAKS_WRAPPERS]
    target: Any = grade
    for key in reversed(comp.path):  # the component alone, in the released nesting
        target = {key: target}
    name = " / ".join(keys)
    binary = comp.scale == (0, 1)
    digest = hashlib.sha1("\x1f".join((qid, *comp.path)).encode()).hexdigest()[:8]
    feature = FEATURES.get(subtask)
    grades = feature.grades if feature is not None and feature.scale == comp.scale else None
    return Item(
        id=f"{info.study_id}:reasonknee-q{qid}:v:{digest}",
        study_id=info.study_id, split=info.split, source=NAME,  # type: ignore[arg-type]
        task="grading", subtask=subtask, level="volume", frames=[],
        question=f"{intro} " + (f"Is '{name}' present (1) or absent (0)? Answer yes or no." if binary
                                else f"Give the MOAKS grade of '{name}' ({comp.scale[0]}-{comp.scale[-1]})."),
        options=None if binary else [f"Grade {g}" + (f": {grades[i]}" if grades else "") for i, g in enumerate(comp.scale)],
        answer={"type": "yes_no", "value": "yes" if grade else "no"} if binary  # type: ignore[arg-type]
        else {"type": "grade", "value": grade, "scale": list(comp.scale)},
        answer_text=json.dumps(target),
        reasoning=f"3DReasonKnee answer (template {qid}): {json.dumps(answer)}",
        chance=0.5 if binary else None,
        label=label,
        template=f"reasonknee/q{qid}/{slug(name)}",
    )
