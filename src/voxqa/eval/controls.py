"""Image controls: how much does a model use the image at all?

* ``blank``: black frames of the same size;
* ``shuffled``: the frame set of a study of another patient (``shuffled_donors``: never the
  study's own mirrored twin or another scan of the same patient);
* ``mirrored``: every frame flipped left-right, with the answers that depend on it flipped
  too, by meaning: every side word of every language the lexicon knows swaps in the
  question, options and answer text ("the left kidney" reads "the right kidney", which is
  where it shows), a choice among sides ("right"/"left", "rechts"/"links", in any order) keeps
  its options and takes the other side as its answer, and every box is mirrored in the image
  (x -> width - x). Given the stored frame size, ``mirror_item`` also mirrors the stored-frame
  boxes (evidence, ``boxes`` and ``box3d`` answers, boxes quoted in the text), so the target
  an oracle writes and the gold it is scored against agree (mirroring commutes with render's
  covering-box resize). Questions point at places by pixel boxes, never world coordinates,
  so every item has a mirrored reading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from voxqa.dataset.paths import check_png, inside
from voxqa.errors import InputError
from voxqa.fileio import atomic_write
from voxqa.conversation import BOX_TEXT
from voxqa.radreports.lexicon import mirror_sides
from voxqa.schema import Answer, Item, KeywordBox

CONTROLS = ("none", "blank", "shuffled", "mirrored")


def shuffled_donors(patient_of: Mapping[str, str]) -> dict[str, str]:
    """For each study (id -> patient id), the study whose frames the shuffled control shows
    instead: one of the next patient's studies in sorted patient order (cyclic), spread by the
    study's rank within its own patient. Deterministic, and never the same patient, so a
    mirrored twin (same patient) never stands in for its original."""
    by_patient: dict[str, list[str]] = {}
    for study, patient in sorted(patient_of.items()):
        by_patient.setdefault(patient, []).append(study)
    patients = sorted(by_patient)
    if len(patients) < 2:
        raise InputError("the shuffled control shows frames of another patient: the selection "
                         f"holds {len(patients)} patient(s); it needs at least two")
    donors = {}
    for i, patient in enumerate(patients):
        pool = by_patient[patients[(i + 1) % len(patients)]]
        for j, study in enumerate(by_patient[patient]):
            donors[study] = pool[j % len(pool)]
    return donors


def mirror_box(box, width: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    return (width - x1, y0, width - x0, y1)


def mirror_item(item: Item, frame_size: tuple[int, int] | None = None) -> Item:
    """The item as it reads on left-right mirrored images: image boxes and sides flipped.

    With the stored ``frame_size`` (width, height) the stored-frame boxes are flipped too:
    evidence boxes, ``boxes`` / ``box3d`` answers and the boxes the question, options,
    reasoning and answer text quote (only quotes of the item's own boxes), so every box the
    item shows or expects is on the mirrored image. Without it only image boxes and sides flip
    (answer boxes then still describe the unmirrored frame).
    """
    width = item.images[0].width if item.images else 0
    evidence = [e.model_copy(update={"image_box": mirror_box(e.image_box, width)})
                if e.image_box is not None else e for e in item.evidence]
    update: dict = {"evidence": evidence, "question": mirror_sides(item.question),
                    "reasoning": mirror_sides(item.reasoning), "answer_text": mirror_sides(item.answer_text)}
    answer = _mirror_answer(item)
    if frame_size is not None:
        stored_w = frame_size[0]

        def flip(box) -> tuple[int, int, int, int]:
            return tuple(mirror_box(box, stored_w))

        known = {tuple(e.box) for e in item.evidence}
        if answer.type == "boxes":
            known |= {tuple(b.box) for b in answer.value}
            answer = answer.model_copy(update={"value": [
                b.model_copy(update={"box": flip(b.box)}) for b in answer.value]})
        elif answer.type == "box3d":
            known.add(tuple(answer.value.box))
            answer = answer.model_copy(update={
                "value": answer.value.model_copy(update={"box": flip(answer.value.box)})})

        def text(t: str) -> str:
            def sub(m) -> str:
                box = tuple(int(g) for g in m.groups())
                return str(list(flip(box))) if box in known else m.group(0)
            return BOX_TEXT.sub(sub, t)

        update["evidence"] = [e.model_copy(update={"box": flip(e.box)}) for e in evidence]
        update |= {k: text(update[k]) for k in ("question", "reasoning", "answer_text")}
        if item.options is not None:
            update["options"] = [text(o) for o in _mirror_options(item.options)[0]]
        if answer.type == "text":
            answer = answer.model_copy(update={"value": text(answer.value)})
    elif item.options is not None:
        update["options"] = _mirror_options(item.options)[0]
    update["answer"] = answer
    return item.model_copy(update=update)


def _mirror_options(options: list[str]) -> tuple[list[str], list[int] | None]:
    """The options as they read mirrored, and how answers move. Options that are sides only
    ("right"/"left" in any language and order: mirroring permutes them) stay as shown and
    answer ``i`` becomes ``moved[i]``, the option naming the other side; options that name
    sided structures ("the left kidney") are renamed and answers keep their index."""
    swapped = [mirror_sides(o) for o in options]
    if swapped != options and sorted(swapped) == sorted(options):
        return options, [options.index(o) for o in swapped]
    return swapped, None


def _mirror_answer(item: Item) -> Answer:
    """The answer of the mirrored reading: the other side among side options, the side words
    of a text answer and of grounded keywords swapped ("left kidney" is where the right one
    shows); everything else (boxes aside) as it was."""
    answer = item.answer
    if answer.type == "text":
        return answer.model_copy(update={"value": mirror_sides(answer.value)})
    if answer.type == "boxes":
        return answer.model_copy(update={"value": [
            b.model_copy(update={"keyword": mirror_sides(b.keyword)}) if isinstance(b, KeywordBox) else b
            for b in answer.value]})
    if item.options is None:
        return answer
    moved = _mirror_options(item.options)[1]
    if moved is None:
        return answer
    if answer.type == "choice":
        return answer.model_copy(update={"value": moved[answer.value]})
    if answer.type == "multi_choice":
        return answer.model_copy(update={"value": sorted(moved[v] for v in answer.value)})
    return answer


def mirrored_png(src: Path, run: Path) -> Path:
    """A left-right flipped copy of ``src`` under the run folder's ``controls/mirrored`` (made
    once; resolved inside ``run``, so a link planted there is neither shown nor written through)."""
    tag = hashlib.sha1(str(src).encode()).hexdigest()[:12]
    dst = inside(run, f"controls/mirrored/{tag}_{src.name}", "mirrored control")
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(check_png(src, "image")) as im, atomic_write(dst) as fh:  # never a half PNG to reuse
            Image.fromarray(np.asarray(im)[:, ::-1].copy()).save(fh, format="PNG")
    return dst
