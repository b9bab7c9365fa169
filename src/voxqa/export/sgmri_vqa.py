"""SGMRI-VQA: a rendered voxqa dataset as SGMRI-VQA's QA records, so tools written for that
benchmark (its evaluation and fine-tuning scripts) can read work built with voxqa.

Per split and anatomy, ``<anatomy>_<split>_slice_qa_pairs.json`` and
``<anatomy>_<split>_volume_qa_pairs.json``, flat lists in the released generator's record
format (github.com/lamawmouk/SGMRI-VQA @ a37aa3d, ``generate_qa_gpt4o_knee.py`` L519-535 and
L586-600; ../shared/reference/source-benchmarks.md 1.2):

* slice level: ``volume_id, slice_num, modality, image_path, level: "slice", task, type,
  question, answer, reasoning, ground_truth{labels, diagnosis, bboxes[{x, y, width, height,
  label}]}``;
* volume level: ``volume_id, modality, num_slices, level: "volume", step, task, type,
  question, answer, reasoning, ground_truth{final_diagnosis}``, boxes only in the answer text.

Conventions as SGMRI uses them (not voxqa's), which are the ``sgmri`` box profile's
(``voxqa.boxes.profiles``; the format's default profile and the only one it accepts), so the
records, the prompts ``voxqa eval --profile sgmri`` shows and the replies it reads agree:
frame numbers are **1-based** (``slice_num`` and every ``Frame N`` / ``frames a-b`` = voxqa
frame + 1, the brain convention; the knee release is one lower, a bug voxqa does not copy);
boxes are ``<bbx>[x,y,w,h]</bbx>``, pixel x, y, width, height on the rendered PNG
``image_path`` points to (the stored frame when rendered at native size, as SGMRI uses it).
Question types: yes/no and numbers are ``closed_ended``, choice ``single_choice`` (options
written into the question as ``(A) ...``), multi-choice ``multiple_choice``, the rest
``open_ended``. Items SGMRI has no task for (spatial, grading) and 3D boxes are left out and
counted in ``sgmri_export.json``.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from voxqa.answers.options import marked
from voxqa.boxes.profiles import Profile
from voxqa.conversation import BoxStyle, InlineBoxes, Sample
from voxqa.dataset.folder import read_studies
from voxqa.errors import InputError
from voxqa.export.base import write_json
from voxqa.render import map_box
from voxqa.schema import Item, Study

#: voxqa task -> SGMRI task (classification with subtask "diagnosis" is SGMRI's diagnosis).
TASKS = {"detection": "detection", "localization": "localization", "counting": "counting",
         "classification": "classification", "captioning": "captioning"}
TYPES = {"yes_no": "closed_ended", "number": "closed_ended", "choice": "single_choice",
         "multi_choice": "multiple_choice", "text": "open_ended", "boxes": "open_ended",
         "frames": "open_ended"}
NOTES = "sgmri_export.json"
#: the box profile the records are written in (SGMRI's convention: 1-based frames, <bbx> xywh)
PROFILE = "sgmri"


def _xywh(box: tuple[int, int, int, int] | list[int]) -> list[int]:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _task(item: Item) -> str | None:
    if item.template.startswith("sgmri/"):  # imported from SGMRI-VQA: its own task back
        return item.template.split("/")[1]
    if item.task == "classification" and item.subtask == "diagnosis":
        return "diagnosis"
    return TASKS.get(item.task)


def _letters(indices: list[int]) -> str:
    return ", ".join(marked(i) for i in indices)


def _answer(s: Sample, target: dict[str, Any], study: Study, profile: Profile) -> str:
    """The answer as SGMRI writes it: Yes/No, a number, (B), or text with inline boxes; frames
    and boxes in the profile's convention (the target's texts already are)."""
    a = s.item.answer
    if a.type == "yes_no":
        return a.value.capitalize()
    if a.type in ("number", "grade"):
        return str(a.value)
    if a.type == "choice":
        return _letters([a.value])
    if a.type == "multi_choice":
        return _letters(a.value)
    if a.type == "frames":
        return "Frames " + ", ".join(map(str, target["answer"]))
    if a.type == "boxes":
        size = (s.item.images[0].width, s.item.images[0].height)  # type: ignore[index]
        labels = {(e.frame, tuple(e.box)): e.label for e in s.item.evidence}
        by_label: dict[str, list[str]] = defaultdict(list)
        for b in a.value:
            shown = map_box(b.box, study.frame_size, size)
            name = labels.get((b.frame, tuple(b.box)), s.item.label or "finding")
            by_label[name].append(f"Frame {b.frame + profile.frame_base}: {profile.write(shown, *size)}")
        if s.item.level == "frame":
            return " ".join(f"The {name} is located at " + ", ".join(p.split(": ", 1)[1] for p in parts) + "."
                            for name, parts in by_label.items())
        return " ".join(f"{name}: " + "; ".join(parts) for name, parts in by_label.items())
    return str(target["answer"])


def _record(s: Sample, study: Study, profile: Profile) -> dict[str, Any] | None:
    task, qtype = _task(s.item), TYPES.get(s.item.answer.type)
    if task is None or qtype is None:
        return None
    target = json.loads(s.target)
    question = s.question
    if s.options:
        question += " " + " ".join(f"{marked(i)} {o}" for i, o in enumerate(s.options))
    common = {"volume_id": s.item.study_id,
              "modality": study.anatomy if study.anatomy in ("knee", "brain") else study.modality,
              "task": task, "type": qtype, "question": question,
              "answer": _answer(s, target, study, profile), "reasoning": target["reasoning"]}
    if s.item.level == "volume":
        return {**common, "num_slices": study.frame_count, "level": "volume", "step": 0,
                "ground_truth": {"final_diagnosis": sorted({e.label for e in s.item.evidence})}}
    frame = s.item.frames[0]
    shown = {e.label for e in s.item.evidence if e.frame == frame}
    return {**common, "slice_num": frame + profile.frame_base, "image_path": s.images[0], "level": "slice",
            "ground_truth": {"labels": sorted(shown), "diagnosis": sorted(shown), "bboxes": [
                dict(zip(("x", "y", "width", "height"), _xywh(e.image_box), strict=False), label=e.label)  # type: ignore[arg-type]
                for e in s.item.evidence if e.frame == frame and e.image_box is not None]}}


def _dataset_folder(s: Sample) -> Path:
    """The dataset folder: an image's absolute path less its path relative to the folder."""
    absolute, relative = s.images[0], s.item.images[0].path  # type: ignore[index]
    return Path(absolute[: -len(relative)])


class SgmriVqaFormat:
    name = "sgmri-vqa"
    profile = PROFILE

    def box_style(self, profile: Profile) -> BoxStyle:
        if profile.name != PROFILE or profile.frame_base != 1:
            raise InputError(f"the sgmri-vqa format writes SGMRI-VQA's convention (1-based frames, pixel "
                             f"<bbx>[x,y,w,h]</bbx> boxes): export it with --profile {PROFILE} (its default), "
                             f"not {profile.spec}")
        return InlineBoxes(profile)

    def write(self, samples: dict[str, list[Sample]], out: Path, profile: Profile) -> list[str]:
        first = next(s for rows in samples.values() for s in rows)
        studies = {st.id: st for st in read_studies(_dataset_folder(first))}
        files: dict[str, list[dict[str, Any]]] = defaultdict(list)
        left_out: Counter[str] = Counter()
        for split, rows in sorted(samples.items()):
            for s in rows:
                study = studies[s.item.study_id]
                record = _record(s, study, profile)
                if record is None:
                    left_out[f"{s.item.task}/{s.item.answer.type}"] += 1
                    continue
                level = "slice" if record["level"] == "slice" else "volume"
                files[f"{study.anatomy}_{split}_{level}_qa_pairs.json"].append(record)
        for name, records in sorted(files.items()):
            write_json(out / name, records)
        write_json(out / NOTES, {"frames": f"{profile.frame_base}-based (voxqa frame + {profile.frame_base})",
                                 "boxes": "pixel <bbx>[x,y,w,h]</bbx> on the rendered image",
                                 "profile": profile.spec,
                                 "left_out": dict(sorted(left_out.items()))})
        return sorted(files) + [NOTES]
