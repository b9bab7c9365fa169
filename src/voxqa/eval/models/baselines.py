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

import random
from collections import Counter, defaultdict
from typing import Any

from voxqa.answers import ANSWER_TYPES
from voxqa.boxes.profiles import Profile
from voxqa.eval.models.base import ModelAdapter
from voxqa.eval.prompts import Prompt
from voxqa.schema import Item, Study
from voxqa.dataset.splits import unit_interval


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
        numbers = self.numbers.get(item.template) or []
        return ANSWER_TYPES[item.answer.type].random_reply(item, r, self.profile, numbers)


class Prior(ModelAdapter):
    """Blind: the audit's text-only learner per template, fitted on the train split (no image)."""

    spec = "prior"

    def __init__(self, train: list[Item], studies: list[Study] | None = None, frame_base: int = 0):
        from voxqa.dataset.audit import TextOnlyGuesser

        self.frame_base = frame_base  # the profile's: frame numbers as the prompt labels them
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for it in train:
            counts[it.template][self._text(it)] += 1
        self.best = {t: c.most_common(1)[0][0] for t, c in counts.items() if c}
        self.guesser = TextOnlyGuesser(train, {s.id: s for s in studies or []})

    def _text(self, it: Item) -> str:
        kind = ANSWER_TYPES[it.answer.type]
        return kind.reply_text(it.answer.value, self.frame_base) if kind.blind_prior else ""

    def identity(self) -> dict[str, Any]:
        return {"spec": self.spec, "templates": len(self.best), "learner": "audit text-only",
                "learned_templates": len(self.guesser.learners)}

    async def answer(self, prompt: Prompt, item: Item) -> str:
        kind = ANSWER_TYPES[item.answer.type]
        if not kind.blind_prior:
            return ""  # no blind prior for a location
        pred = self.guesser.predict([item])[0]
        if pred is not None:
            if isinstance(pred, float) and pred.is_integer():
                pred = int(pred)
            return kind.reply_text(pred, self.frame_base)
        # a template never seen in train: a fixed guess per answer type
        return self.best.get(item.template, kind.constant_reply)
