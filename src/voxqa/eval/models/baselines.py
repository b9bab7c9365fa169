"""Baselines that need no weights: random, prior (blind) and oracle.

* ``random``: a uniform draw from each item's answer space (seeded by item id), written in
  the answer format the prompt asks for, boxes in the profile's convention;
* ``prior``: blind: the blind audit's text-only learner (``voxqa.dataset.audit``) fitted on
  the train split: per template, logistic regression on the question's words and numbers,
  quoted box geometry, the frame indices shown and (choice items) each option's text, so the
  leaderboard's blind row is the strongest cheap text-only guesser. Templates without a
  learner (frames, text answers; a template unseen in train) get the most frequent train
  answer; boxes have no meaningful prior: it abstains, which scores as wrong;
* ``oracle``: the structured ground-truth target; it must score 100%, a self-check of
  prompts, parsing and metrics.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from typing import Any

from voxqa.boxes.profiles import Profile
from voxqa.eval.models.base import ModelAdapter
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item, Study
from voxqa.dataset.splits import unit_interval

LETTERS = "ABCDEFGHIJ"


def _letters(indices: list[int]) -> str:
    return ", ".join(LETTERS[i] for i in indices)


class Oracle(ModelAdapter):
    spec = "oracle"

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        return prompt.target


class Random(ModelAdapter):
    spec = "random"

    def __init__(self, profile: Profile, seed: int = 0, numbers: dict[str, list[float]] | None = None):
        self.profile, self.seed = profile, seed
        self.numbers = numbers or {}

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec, "seed": self.seed}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        r = random.Random(int(unit_interval("random", self.seed, item.id) * 2**53))
        kind = item.answer.type
        shown = [im for im in item.images or []]
        if kind == "yes_no":
            return r.choice(["yes", "no"])
        if kind == "choice":
            return LETTERS[r.randrange(len(item.options or [1]))]
        if kind == "multi_choice":
            n = len(item.options or [])
            picked = [i for i in range(n) if r.random() < 0.5] or [r.randrange(max(n, 1))]
            return _letters(picked)
        if kind in ("number", "grade"):
            pool = self.numbers.get(item.template) or list(range(11))
            return str(r.choice(pool))
        if kind == "frames":
            frames = [im.frame for im in shown] or [0]
            a, b = sorted(r.sample(range(len(frames)), 2)) if len(frames) > 1 else (0, 0)
            return ", ".join(str(f) for f in frames[a:b + 1])
        if kind in ("boxes", "box3d"):
            im = r.choice(shown)
            x0, x1 = sorted(r.sample(range(im.width + 1), 2))
            y0, y1 = sorted(r.sample(range(im.height + 1), 2))
            box = self.profile.encode((x0, y0, x1, y1), im.width, im.height)
            if kind == "box3d":
                return f"frames {im.frame}-{im.frame}, {json.dumps(box)}"
            return f"Frame {im.frame}: {json.dumps(box)}"
        return "No abnormality."


class Prior(ModelAdapter):
    """Blind: the audit's text-only learner per template, fitted on the train split (no image)."""

    spec = "prior"

    # Answer for a template never seen in train: a fixed guess per answer type.
    FALLBACK = {"yes_no": "no", "choice": "A", "multi_choice": "A", "number": "0", "grade": "0",
                "frames": "0", "text": "No abnormality."}

    def __init__(self, train: list[Item], studies: list[Study] | None = None):
        from voxqa.dataset.audit import TextOnlyGuesser

        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for it in train:
            counts[it.template][self._text(it)] += 1
        self.best = {t: c.most_common(1)[0][0] for t, c in counts.items() if c}
        self.guesser = TextOnlyGuesser(train, {s.id: s for s in studies or []})

    @staticmethod
    def _text(it: Item) -> str:
        a = it.answer
        if a.type == "choice":
            return LETTERS[a.value]
        if a.type == "multi_choice":
            return _letters(a.value) or "none"
        if a.type == "frames":
            return ", ".join(map(str, a.value))
        if a.type in ("boxes", "box3d"):
            return ""  # no blind prior for a location
        return str(a.value)

    @staticmethod
    def _format(kind: str, value: object) -> str:
        if kind == "choice":
            return LETTERS[int(value)]  # type: ignore[arg-type]
        if kind == "multi_choice":
            return _letters(list(value)) or "none"  # type: ignore[call-overload]
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec, "templates": len(self.best), "learner": "audit text-only",
                "learned_templates": len(self.guesser.learners)}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        if item.answer.type in ("boxes", "box3d"):
            return ""  # no blind prior for a location
        pred = self.guesser.predict([item])[0]
        if pred is not None:
            return self._format(item.answer.type, pred)
        return self.best.get(item.template, self.FALLBACK.get(item.answer.type, ""))
