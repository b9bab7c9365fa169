"""3DReasonKnee / ReasonKnee-Bench (released question files + MOAKS JSON answers + split CSVs
[+ OAI DESS NIfTI]) -> knee grading items, the zero-shot and guided prompts in one dataset.

Released files (github.com/rajpurkarlab/3DReasonKnee @ bcc32ba and HF rajpurkarlab/3DReasonKnee):

* ``data/question_files/questions_nobbox_{zeroshot,guided}.json``: 69 templates keyed "1".."69",
  each ending with the JSON its answer must take, e.g. ``{"MOAKS_scores": {"patella medial
  BML": {"Size of BML (including cyst)": (grade from 0-3), ...}}}``; the guided file inserts a
  sentence on what the finding looks like (Q30 also rewords its scoring text), the answer JSON
  is the same;
* answer records as the released SFT code reads them, ``{image, prompt, answer}``, the answer a
  MOAKS JSON string; ``question_id`` (or the released output key
  ``<patient_id>_<time>_<study_folder>_<series_folder>_<knee_side>_<question_id>``, or a prompt
  equal to a template of either file) names the template;
* split CSVs ``patient_id, time, study_folder, series_folder, knee_side, image_filepath,
  label_filepath``.

Each answer is checked against its template's JSON shape: the same keys, each leaf an integer
on the template's scale ("(grade from 0-3)", "(0 | 1)", "(0-3)") or a 3D box where the
template asks one (``[start_slice, end_slice, x_min, x_max, y_min, y_max]``). Beside those an
answer (or its record) may carry ``bbox``, the question's region as such a 3D box, and
``reasoning``, the reference trace; anything else is refused naming the key path, as a guessed
reading could grade the wrong component. Q58/59's answer JSON lost its opening to the
release's bbox stripping (``... Provide your reasoning and end_slice, x_min, x_max, y_min,
y_max], "medial_meniscal_root_tear": {"presence": (0 | 1)}}``): it is repaired to ``{"bbox":
<3D box>, "medial_meniscal_root_tear": {...}}`` (counted), the key ``bbox`` being voxqa's
reading of the lost text. The released inconsistency of extrusion grades (Q44/45 a bare grade,
Q46/47 ``{"grade": g}``) is read as written by the template.

One voxqa item per graded component (task ``grading``): a 0/1 component is yes/no, a code
with a legend in its template ("0 = MMA (Medial Meniscus Anterior), ..., 3 = No tear
detected") a ``choice`` among the legend (scored by accuracy only), any other a ``grade`` with
its scale. Its question is the released zero-shot template, its ``guided_question`` the guided
one (``--guided``), so one dataset holds both and the prompt mode picks (``voxqa eval --mode
minimal`` / ``guided``); ``json_path`` is the component's key path, where a reply in the
template's JSON is read. Every component maps to its (feature, region) of the knee table
(``voxqa.anatomy.knee``, one to one with the templates). A record with a 3D box also gives a
``localization/region_box3d`` item (its answer the box) and the box as its grading items'
``region`` (GT-region mode).
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
from voxqa.anatomy.knee import MOAKS_WRAPPERS, TEMPLATES, released_components, where
from voxqa.answers.reply import key_words
from voxqa.dataset.build_report import BuildReport
from voxqa.dataset.folder import check_out_folder, no_gc
from voxqa.dataset.paths import check_study_id
from voxqa.errors import BuildError, not_utf8
from voxqa.importers import field, load_json, ras_shape, volume_file, write_imported
from voxqa.schema import Box3D, Item, Study, VolumeRef
from voxqa.sources.knee import DEFAULT_FRAME_SIZE
from voxqa.tasks.base import slug

NAME = "reasonknee"
FORMAT = "reasonknee"
SPLIT_COLUMNS = ("patient_id", "time", "study_folder", "series_folder", "knee_side", "image_filepath", "label_filepath")
_SCALE_KEY = "__scale__"
_BOX_KEY = "__box3d__"
_SCALES = (
    (re.compile(r"\(grade from (\d+)-(\d+)\)"), lambda m: (int(m.group(1)), int(m.group(2)))),
    (re.compile(r"\(?\b0 \| 1\b\)?"), lambda m: (0, 1)),
    (re.compile(r"\((\d+)-(\d+)\)"), lambda m: (int(m.group(1)), int(m.group(2)))),
)
#: The released 3D-box placeholder, whole ("[start_slice, end_slice, ...]") or, as in Q58/59,
#: its head and the key before it lost ("... and end_slice, x_min, x_max, y_min, y_max],").
_BOX = re.compile(r"(\[\s*start_slice,\s*)?end_slice,\s*x_min,\s*x_max,\s*y_min,\s*y_max\s*\]")
_LEGEND = re.compile(r"(?:^|[\s:,])(\d+)\s*=\s*([^,\n]+?)\s*(?=,|\.\s|\.$|\n|$)")
BOX_FIELD = "bbox"  # the answer's (or record's) 3D box of the question's region
REASONING_FIELD = "reasoning"
BOX_LAYOUT = "[start_slice, end_slice, x_min, x_max, y_min, y_max]"


@dataclass(frozen=True)
class Component:
    """One leaf of a template's answer JSON: a grade on ``scale`` (a code of ``legend`` when
    the template defines one), or a 3D box (``box``)."""

    path: tuple[str, ...]  # keys from the top of the answer JSON to the leaf
    scale: tuple[int, ...] = ()
    legend: tuple[str, ...] | None = None
    box: bool = False


@dataclass(frozen=True)
class Template:
    qid: str
    text: str
    components: tuple[Component, ...]
    repaired: bool  # the answer JSON's head was lost in the release and is restored (Q58/59)


def answer_shape(template: str) -> tuple[dict[str, Any], bool] | None:
    """The template's answer JSON with each placeholder replaced by its scale or box marker,
    and whether a lost head had to be restored (Q58/59); None when it ends in no JSON."""
    text = template.rstrip().rstrip(".'\"").rstrip()
    repaired = False

    def box(m: re.Match[str]) -> str:
        nonlocal repaired
        marker = json.dumps({_BOX_KEY: True})
        if m.group(1):
            return marker
        repaired = True
        return "{" + json.dumps(BOX_FIELD) + ": " + marker
    text = _BOX.sub(box, text)
    for pattern, scale in _SCALES:
        text = pattern.sub(lambda m, s=scale: json.dumps({_SCALE_KEY: list(range(s(m)[0], s(m)[1] + 1))}), text)
    for start in (m.start() for m in re.finditer(r"\{", text)):
        try:
            value = json.loads(text[start:])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and _SCALE_KEY not in value and _BOX_KEY not in value:
            return value, repaired
    return None


def _legend(text: str, scale: tuple[int, ...]) -> tuple[str, ...] | None:
    """The template's "k = meaning" legend when it names exactly the scale's codes."""
    found = {int(k): v.strip() for k, v in _LEGEND.findall(text)}
    return tuple(found[k] for k in scale) if scale and sorted(found) == list(scale) else None


def components(shape: dict[str, Any], text: str, path: tuple[str, ...] = ()) -> list[Component]:
    out = []
    for key, value in shape.items():
        if isinstance(value, dict) and _SCALE_KEY in value:
            scale = tuple(value[_SCALE_KEY])
            out.append(Component(path + (key,), scale, _legend(text, scale) if scale != (0, 1) else None))
        elif isinstance(value, dict) and _BOX_KEY in value:
            out.append(Component(path + (key,), box=True))
        elif isinstance(value, dict):
            out += components(value, text, path + (key,))
        else:
            raise BuildError(f"template answer JSON has a value that is not a grade placeholder at {'.'.join(path + (key,))}")
    return out


def read_templates(path: Path) -> dict[str, Template]:
    """question id -> its template; one whose text ends in no answer JSON is refused."""
    data = load_json(path, "3DReasonKnee question file")
    if not isinstance(data, dict) or not data:
        raise BuildError(f"{path}: expected a JSON object of templates keyed '1'..'{TEMPLATES}'")
    out: dict[str, Template] = {}
    for qid, text in data.items():
        if not isinstance(text, str):
            raise BuildError(f"{path}[{qid!r}]: a template must be a string, got {type(text).__name__}")
        shape = answer_shape(text)
        if shape is None:
            raise BuildError(f"{path}[{qid!r}]: the template ends in no answer JSON")
        out[qid] = Template(qid, text, tuple(components(shape[0], text)), shape[1])
    return out


def _check_pair(zero: dict[str, Template], guided: dict[str, Template], path: Path) -> None:
    """The guided file must ask the same templates for the same answer JSON."""
    if set(zero) != set(guided):
        raise BuildError(f"{path}: its templates {sorted(set(guided) ^ set(zero), key=str)[:5]} are not in both files")
    for qid, t in zero.items():
        if [(c.path, c.scale, c.box) for c in t.components] != [(c.path, c.scale, c.box) for c in guided[qid].components]:
            raise BuildError(f"{path}[{qid!r}]: the guided template asks another answer JSON than the zero-shot one")


def _norm(path: Sequence[str]) -> tuple[str, ...]:
    return tuple(key_words(k) for k in path)


#: normalised released key path -> (feature, region): the knee table, one to one with the templates.
_TABLE = {_norm(p): (feature, region) for comps in released_components().values() for feature, region, p in comps}


def feature_of(comp: Component) -> tuple[str, str] | None:
    """(feature, region) of a released component by its key path; None for a path the table
    does not hold (a question file other than the released one)."""
    return _TABLE.get(_norm(comp.path))


def _leaf(answer: Any, comp: Component, where_: str) -> Any:
    value = answer
    for n, key in enumerate(comp.path):
        if not isinstance(value, dict) or key not in value:
            if comp.box:
                return None  # a box is optional: an answer without it has no region
            raise BuildError(f"{where_}: answer lacks {'.'.join(comp.path[: n + 1])!r} that the template asks for")
        value = value[key]
    if comp.box:
        return value
    if not isinstance(value, int) or isinstance(value, bool) or value not in comp.scale:
        raise BuildError(f"{where_}: answer field {'.'.join(comp.path)!r} = {value!r} is not a grade on the "
                         f"template's scale {list(comp.scale)}")
    return value


def _paths(value: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, path + (k,))]
    return [path]


def _box3d(value: Any, where_: str, frames: int | None, size: tuple[int, int] | None) -> Box3D:
    """A released 3D box ``[start, end, x_min, x_max, y_min, y_max]`` (or a list holding one):
    frames inclusive, pixels max exclusive, on the study's frames."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not (isinstance(value, list) and len(value) == 6
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
        raise BuildError(f"{where_} = {value!r:.80} is not one 3D box {BOX_LAYOUT} of non-negative integers")
    f0, f1, x0, x1, y0, y1 = value
    if not (f0 <= f1 and x0 < x1 and y0 < y1):
        raise BuildError(f"{where_} = {value} is empty (start_slice <= end_slice, x_min < x_max, y_min < y_max)")
    if frames is not None and size is not None and (f1 >= frames or x1 > size[0] or y1 > size[1]):
        raise BuildError(f"{where_} = {value} is outside the volume's {frames} frames of {size[0]}x{size[1]}")
    return Box3D(frame_start=f0, frame_end=f1, box=(x0, y0, x1, y1))


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


def _volume(image: str, root: Path | None, report: BuildReport) -> tuple[VolumeRef | None, int | None, tuple[int, int], str]:
    if root is None:
        return None, None, DEFAULT_FRAME_SIZE, "default"
    path = volume_file(root, [image], report)
    if path is None:
        return None, None, DEFAULT_FRAME_SIZE, "default"
    shape = ras_shape(path)
    return VolumeRef(path=str(path), loader="nifti"), shape[0], (shape[1], shape[2]), "volume"


def import_reasonknee(questions: Path, answers: Path, out: Path, *, guided: Path | None = None,
                      splits: Sequence[Path] = (), volumes_root: Path | None = None,
                      strict: bool = False) -> dict[str, Any]:
    """Import released MOAKS answers as grading items (``questions``: the zero-shot file,
    ``guided``: the guided one, asked in guided mode); returns the manifest."""
    check_out_folder(out)
    with no_gc():
        report = BuildReport(strict=strict)
        templates = read_templates(questions)
        guided_templates = read_templates(guided) if guided is not None else None
        if guided_templates is not None:
            _check_pair(templates, guided_templates, guided)  # type: ignore[arg-type]
        repaired = sorted((q for q, t in templates.items() if t.repaired), key=int)
        if repaired:
            report.add("info", "template_answer_json_head_restored", count=len(repaired), templates=repaired)
        by_prompt = {t.text: qid for qid, t in templates.items()}
        by_prompt |= {t.text: qid for qid, t in (guided_templates or {}).items()}
        studies_of = read_splits(splits, report)
        records = load_json(answers, "3DReasonKnee answer file")
        if not isinstance(records, list):
            raise BuildError(f"{answers}: expected a JSON list of answer records, got {type(records).__name__}")
        studies: dict[str, Study] = {}
        items: list[Item] = []
        for n, rec in enumerate(records):
            where_ = f"{answers}[{n}]"
            image = field(rec, "image", where_, str)
            qid = _question_id(rec, where_, by_prompt)
            if qid not in templates:
                raise BuildError(f"{where_}: field 'question_id' {qid!r} names no template of {questions}")
            template = templates[qid]
            raw = field(rec, "answer", where_, (str, dict))
            try:
                answer = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError as exc:
                raise BuildError(f"{where_}: field 'answer' is not MOAKS JSON ({exc})") from None
            if not isinstance(answer, dict):
                raise BuildError(f"{where_}: field 'answer' must be a JSON object, got {type(answer).__name__}")
            extra = sorted(set(_paths(answer)) - {c.path for c in template.components}
                           - {(BOX_FIELD,), (REASONING_FIELD,)})
            if extra:
                raise BuildError(f"{where_}: answer field {'.'.join(extra[0])!r} is not in template {qid}'s answer JSON")
            info = studies_of.get(image)
            if info is None:
                sid = _study_from_key(rec, qid, image, where_)
                info = Split(sid, sid.split("_")[0], "test", image)
                if splits:
                    report.add("warning", "image_not_in_split_csvs_used_test", where=where_, image=image)
            if info.study_id not in studies:
                ref, frames, size, src = _volume(image, volumes_root, report)
                studies[info.study_id] = Study(
                    id=info.study_id, patient_id=info.patient_id, source=NAME, modality="MR", anatomy="knee",
                    volume=ref, view_axis=SAGITTAL_VIEW_AXIS, frame_count=frames,
                    frame_count_source="volume" if frames else "unknown", frame_size=size,
                    frame_size_source=src, split=info.split,  # type: ignore[arg-type]
                )
            study = studies[info.study_id]
            known = (study.frame_count, study.frame_size) if study.frame_count_source == "volume" else (None, None)
            region, box_path = _region(rec, answer, template, where_, known)
            reasoning = _reasoning(rec, answer, where_)
            guided_text = guided_templates[qid].text if guided_templates is not None else None
            for comp in template.components:
                if not comp.box:
                    items.append(_item(info, template, guided_text, comp, _leaf(answer, comp, where_), answer,
                                       region, reasoning))
            if region is not None:
                items.append(_box_item(info, template, region, box_path, reasoning))
        report.totals |= {"records_read": len(records), "items": len(items), "studies": len(studies)}
        files = [(questions, "questions")] + ([(guided, "guided_questions")] if guided else []) \
            + [(answers, "answers")] + [(p, "split") for p in splits]
        return write_imported(
            out, name="reasonknee", source=NAME, command="voxqa import reasonknee",
            options={"questions": str(questions), "guided": str(guided) if guided else None, "answers": str(answers),
                     "splits": [str(p) for p in splits],
                     "volumes_root": str(volumes_root) if volumes_root else None, "strict": strict},
            files=files, studies=list(studies.values()), items=items, report=report,
            extra={"frames": "sagittal (voxqa.anatomy.frames.SAGITTAL_FRAME_CONVENTION)",
                   "prompt_modes": {"minimal": "the released zero-shot template (--questions)",
                                    "guided": "the released guided template (--guided)" if guided else None,
                                    "oracle_region": "the guided template and the region's 3D box (bbox)"},
                   "metric": "3DReasonKnee released no metric code: voxqa's grade metrics (accuracy, MAE, QWK), "
                             "accuracy for yes/no and nominal codes, 3D IoU for boxes"},
        )


def _question_id(rec: Any, where_: str, by_prompt: dict[str, str]) -> str:
    """The template of a record: ``question_id``, else the released key's last part, else the
    template its prompt is."""
    if "question_id" in rec:
        return str(field(rec, "question_id", where_, (str, int)))
    if "key" in rec:
        return field(rec, "key", where_, str).rsplit("_", 1)[-1]
    prompt = rec.get("prompt")
    if isinstance(prompt, str) and prompt in by_prompt:
        return by_prompt[prompt]
    raise BuildError(f"{where_}: missing field 'question_id' (and no 'key' or template 'prompt' to take it from)")


def _study_from_key(rec: Any, qid: str, image: str, where_: str) -> str:
    key = rec.get("key")
    if isinstance(key, str) and key.endswith(f"_{qid}"):
        return check_study_id(key[: -len(qid) - 1], where_ + ".key")
    stem = Path(image).name.split(".nii")[0]
    return check_study_id(stem, where_ + ".image")


def _region(rec: Any, answer: dict[str, Any], template: Template, where_: str,
            known: tuple[int | None, tuple[int, int] | None]) -> tuple[Box3D | None, tuple[str, ...]]:
    """The question's region: the template's box component, else the answer's or record's
    ``bbox``; (None, ()) when the record carries none. Two different boxes are refused."""
    found: list[tuple[tuple[str, ...], str, Any]] = []
    for comp in template.components:
        if comp.box and (value := _leaf(answer, comp, where_)) is not None:
            found.append((comp.path, f"{where_}: answer field {'.'.join(comp.path)!r}", value))
    if not found and BOX_FIELD in answer:
        found.append(((BOX_FIELD,), f"{where_}: answer field {BOX_FIELD!r}", answer[BOX_FIELD]))
    if BOX_FIELD in rec:
        found.append(((BOX_FIELD,), f"{where_}: field {BOX_FIELD!r}", rec[BOX_FIELD]))
    boxes = [(path, _box3d(value, w, *known)) for path, w, value in found]
    if len({(b.frame_start, b.frame_end, b.box) for _, b in boxes}) > 1:
        raise BuildError(f"{where_}: the record and its answer give different 3D boxes")
    return (boxes[0][1], boxes[0][0]) if boxes else (None, ())


def _reasoning(rec: Any, answer: dict[str, Any], where_: str) -> str | None:
    """The reference trace: the answer's or record's ``reasoning`` (a string)."""
    for holder, name in ((answer, f"answer field {REASONING_FIELD!r}"), (rec, f"field {REASONING_FIELD!r}")):
        if REASONING_FIELD in holder:
            value = holder[REASONING_FIELD]
            if not isinstance(value, str) or not value.strip():
                raise BuildError(f"{where_}: {name} must be a non-empty string, got {value!r:.60}")
            return value.strip()
    return None


def _names(comp: Component) -> tuple[str, str, list[str]]:
    """(subtask, label, key words) of a component: its feature and region in the knee table,
    else the released key words."""
    keys = [k for k in comp.path if k not in MOAKS_WRAPPERS]
    mapped = feature_of(comp)
    if mapped is not None:
        return mapped[0], mapped[1], keys
    return slug(" ".join(keys)).replace("-", "_"), " ".join(keys), keys


def _item(info: Split, template: Template, guided: str | None, comp: Component, grade: int,
          answer: dict[str, Any], region: Box3D | None, reasoning: str | None) -> Item:
    subtask, label, keys = _names(comp)
    target: Any = grade
    for key in reversed(comp.path):  # the component alone, in the released nesting
        target = {key: target}
    name = " / ".join(keys)
    qid = template.qid
    digest = hashlib.sha1("\x1f".join((qid, *comp.path)).encode()).hexdigest()[:8]
    given = {k: v for k, v in answer.items() if k not in (BOX_FIELD, REASONING_FIELD)}
    if comp.scale == (0, 1):
        value: dict[str, Any] = {"type": "yes_no", "value": "yes" if grade else "no"}
        options, chance = None, 0.5
    elif comp.legend is not None:  # a nominal code: a choice among the legend, scored by accuracy
        value = {"type": "choice", "value": comp.scale.index(grade)}
        options, chance = [f"{c} = {t}" for c, t in zip(comp.scale, comp.legend, strict=True)], 1 / len(comp.scale)
    else:
        value = {"type": "grade", "value": grade, "scale": list(comp.scale)}
        options, chance = None, None  # the template states the scale
    return Item(
        id=f"{info.study_id}:reasonknee-q{qid}:v:{digest}",
        study_id=info.study_id, split=info.split, source=NAME,  # type: ignore[arg-type]
        task="grading", subtask=subtask, level="volume", frames=[],
        question=template.text, guided_question=guided, json_path=list(comp.path),
        options=options, answer=value,  # type: ignore[arg-type]
        answer_text=json.dumps(target),
        reasoning=reasoning or f"The released answer to template {qid} is {json.dumps(given)}.",
        chance=chance, label=label, region=region,
        template=f"reasonknee/q{qid}/{slug(name)}",
    )


def _box_item(info: Split, template: Template, region: Box3D, path: tuple[str, ...], reasoning: str | None) -> Item:
    """The record's 3D box as a localization item (its answer the box, in the released layout)."""
    qid = template.qid
    region_name = next((m[1] for c in template.components if not c.box and (m := feature_of(c))), None)
    label = region_name or f"template {qid}"
    place = where(region_name) if region_name else f"the region of template {qid}"
    six = [region.frame_start, region.frame_end, region.box[0], region.box[2], region.box[1], region.box[3]]
    target: Any = six
    for key in reversed(path):
        target = {key: target}
    return Item(
        id=f"{info.study_id}:reasonknee-q{qid}:v:box3d",
        study_id=info.study_id, split=info.split, source=NAME,  # type: ignore[arg-type]
        task="localization", subtask="region_box3d", level="volume", frames=[],
        question=f"In this DESS MRI, give the 3D bounding box of {place} as {BOX_LAYOUT}.",
        json_path=list(path), answer={"type": "box3d", "value": region.model_dump()},  # type: ignore[arg-type]
        answer_text=json.dumps(target),
        reasoning=reasoning or f"The released 3D box of template {qid} is {six}.",
        chance=None, label=label, template=f"reasonknee/q{qid}/region-box3d",
    )
