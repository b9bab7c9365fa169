"""The blind audit: can a template be answered from what a text-only model sees?

CT-SpatialVQA found that 3D medical VLMs answer from language priors instead of the volume.
A benchmark whose answers can be guessed from the prompt text repeats that failure in the
measuring instrument, so every build (and ``voxqa audit DIR``) fits cheap text-only learners
per template on the train split and scores them on val + test.

What the learner sees is everything in the prompt except the pixels:

* the question's words (unigrams and bigrams, numbers replaced by ``#``);
* numbers quoted in the question: boxes ``[x0, y0, x1, y1]`` become geometry (centre, width,
  height, area, as fractions of the frame), other numbers become tokens (``num=7``);
* the frame indices shown with the question (``Frame k:`` labels): one token per index
  (``f=12``) plus their count, min, max, span and the number of distinct gaps between
  consecutive indices (1 for an evenly spaced set);
* for choice / multi-choice items, each option's text, position and words, crossed with the
  question's words, the box geometry and the frame summary (one "is this option right?" row
  per option).

Learners (scikit-learn, deterministic): logistic regression (liblinear, ``random_state=0``)
on the max-abs scaled sparse features (one-vs-rest for more than two classes). yes/no: a binary classifier; number / grade: a
classifier over the train values; choice: per-option scores, argmax; multi-choice: per-option
probabilities, the predicted set is the likeliest one given the train frequency of answer
sizes (``likeliest_subset``; "p > 0.5 per option" picks every option when most are right).
Numbers with more than ``MAX_NUMBER_CLASSES`` distinct train values are regressed (ridge)
instead. Choice and multi-choice templates also get per split label-rate rules
(``LabelRateRule``: the option least / most often right in train), templates without chance
(except grades) the most frequent train answer. Other answer types (boxes, frames, 3D boxes, text) are not
audited.

A template is **flagged** when the exact (Clopper-Pearson) interval of some learner's val+test
accuracy, 95% Bonferroni-corrected over the template's learners, lies wholly above or wholly
below the reference: the mean of the items' ``chance``, or for templates without one (counts)
the accuracy of guessing from the train answer distribution (the best constant would be a
degenerate reference: a skewed answer distribution is itself a shortcut); grades, skewed by
nature and reported beside the constant answer, keep the constant as their reference. Far
below chance is a leak too: reversed, it is far above. Below ``MIN_TRAIN`` train or
``MIN_EVAL`` val+test items the status is ``insufficient``: the audit says so instead of
passing. Items marked ``prior_answerable``
(answerable from anatomical knowledge by nature) are audited as their own groups; their
flags are informative and not counted as failures.

The frames shown are the rendered ``images`` when the dataset is rendered; otherwise what
``voxqa render`` would show (:func:`shown_frames`), and none for box-only studies (render
cannot show them).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from voxqa.answers import ANSWER_TYPES
from voxqa.dataset.frame_policy import DEFAULT_FRAMES, FramePolicy, recorded_policy
from voxqa.fileio import write_json
from voxqa.schema import Item, Study

AUDIT = "audit.json"
AUDIT_VERSION = 1
MIN_TRAIN = 20  # train items a template needs for the audit to say anything
MIN_EVAL = 20  # val + test items
CONFIDENCE = 0.95
MAX_NUMBER_CLASSES = 40  # numbers with more distinct train values are regressed, not classified
AUDITED_TYPES = tuple(name for name, kind in ANSWER_TYPES.items() if kind.audited)
STATUS_NOT_AUDITED = "not audited (answer type)"

_BOX = re.compile(
    r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*\]"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+|#")


# --------------------------------------------------------------------------- frames shown


def shown_frames(item: Item, study: Study | None, policy: FramePolicy = DEFAULT_FRAMES) -> list[int]:
    """Frame indices a model is shown with ``item`` (the ``Frame k:`` labels of its prompt).

    Rendered items: their images. Otherwise what render would show: a frame-level item its
    frames; a volume-level item the study's frame set under ``policy``; nothing for a study
    render cannot draw (no volume).
    """
    if item.images is not None:
        return [im.frame for im in item.images]
    if study is None or study.volume is None:
        return []
    if item.level == "frame":
        return list(item.frames)
    return policy.frames(study.frame_count)


class FramesShown:
    """``shown_frames`` for many items, with the per-study volume frame set computed once."""

    def __init__(self, studies: dict[str, Study] | None, policy: FramePolicy = DEFAULT_FRAMES):
        self.studies = studies or {}
        self.policy = policy
        self._sets: dict[str, list[int]] = {}

    def source(self, item: Item) -> str:
        """Where the frames of ``item`` come from (for the audit's record)."""
        study = self.studies.get(item.study_id)
        if item.images is not None:
            return "images"
        if study is None or study.volume is None:
            return "none (box-only study, not renderable)"
        return "item frames (not rendered)" if item.level == "frame" else "render frame set (not rendered)"

    def __call__(self, item: Item) -> list[int]:
        study = self.studies.get(item.study_id)
        if item.images is None and study is not None and study.volume is not None and item.level == "volume":
            if item.study_id not in self._sets:
                self._sets[item.study_id] = self.policy.frames(study.frame_count)
            return self._sets[item.study_id]
        return shown_frames(item, study, self.policy)


# --------------------------------------------------------------------------- features


def _tokens(text: str) -> list[str]:
    text = _NUMBER.sub(" # ", text.lower())
    return _WORD.findall(text)


def text_features(item: Item, frames: Sequence[int], frame_size: tuple[int, int] | None) -> dict[str, float]:
    """Everything in the prompt but the pixels, as sparse named features."""
    q = item.question
    feats: dict[str, float] = {}
    words = _tokens(_BOX.sub(" box ", q))
    for w in words:
        feats["w=" + w] = 1.0
    for a, b in zip(words, words[1:], strict=False):
        feats[f"b={a}_{b}"] = 1.0
    width, height = frame_size or (1, 1)
    boxes = [tuple(float(v) for v in m.groups()) for m in _BOX.finditer(q)]
    feats["box.n"] = float(len(boxes))
    if boxes:
        x0, y0, x1, y1 = boxes[0]
        w, h = (x1 - x0) / width, (y1 - y0) / height
        feats.update({"box.cx": (x0 + x1) / 2 / width, "box.cy": (y0 + y1) / 2 / height,
                      "box.w": w, "box.h": h, "box.area": w * h})
    rest = _NUMBER.findall(_BOX.sub(" ", q))
    for v in rest:
        feats["num=" + v] = 1.0
    if rest:
        feats["num.first"] = float(rest[0])
    fs = sorted(set(frames))
    feats["frames.n"] = float(len(fs))
    if fs:
        gaps = {b - a for a, b in zip(fs, fs[1:], strict=False)}
        feats.update({"frames.min": float(fs[0]), "frames.max": float(fs[-1]),
                      "frames.span": float(fs[-1] - fs[0]), "frames.gaps": float(len(gaps))})
        for f in fs:
            feats[f"f={f}"] = 1.0
    return feats


_CROSSED = ("w=", "box.", "frames.")


def _option_key(option: str) -> str:
    return " ".join(_tokens(option)) or "(empty)"


def option_features(base: dict[str, float], option: str, position: int,
                    others: Sequence[str] = ()) -> dict[str, float]:
    """One option's row: its text, position and words, crossed with the question's view and
    with the other options shown (each one, and the whole set: an option set that recurs
    across splits may carry its answer)."""
    key = _option_key(option)
    feats: dict[str, float] = {"opt=" + key: 1.0, f"pos={position}": 1.0}
    for w in _tokens(option):
        feats["ow=" + w] = 1.0
    for name, v in base.items():
        if name.startswith(_CROSSED):
            feats[f"{key}|{name}"] = v
    if others:
        rest = sorted(_option_key(o) for o in others)
        for o in rest:
            feats[f"{key}|with={o}"] = 1.0
        feats[f"{key}|set={'+'.join(rest)}"] = 1.0
    return feats


# --------------------------------------------------------------------------- learner

_View = tuple[tuple, dict[str, float]]  # (memo key, features) of one item's text view


def answer_of(item: Item) -> Any:
    """The gold answer as a hashable value (multi-choice: a sorted tuple)."""
    return ANSWER_TYPES[item.answer.type].hashable(item.answer.value)


def is_correct(item: Item, pred: Any) -> bool:
    return pred is not None and ANSWER_TYPES[item.answer.type].matches(item.answer, pred)


def _constant(train: Sequence[Item]) -> Any:
    """The most frequent train answer (ties: the smallest by sort order)."""
    c = Counter(answer_of(it) for it in train)
    top = max(c.values())
    return sorted((v for v, n in c.items() if n == top), key=repr)[0]


def _model(n_classes: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    clf = LogisticRegression(solver="liblinear", C=1.0, random_state=0, max_iter=1000)
    return clf if n_classes <= 2 else OneVsRestClassifier(clf)  # liblinear: fast on sparse rows


class _Vocabulary:
    """Feature names -> columns (sorted names of the train rows; unseen names are dropped)."""

    def __init__(self, rows: Sequence[dict[str, float]]):
        names = sorted({k for r in rows for k in r})
        self.index = {k: i for i, k in enumerate(names)}

    def transform(self, rows: Sequence[dict[str, float]]):
        import numpy as np
        from scipy.sparse import csr_matrix

        index = self.index
        done: dict[int, tuple[list[int], list[float]]] = {}  # rows repeat (memoized views)
        indptr, indices, data = [0], [], []
        for r in rows:
            cols = done.get(id(r))
            if cols is None:
                pairs = [(index[k], v) for k, v in r.items() if k in index]
                cols = done[id(r)] = ([j for j, _ in pairs], [v for _, v in pairs])
            indices += cols[0]
            data += cols[1]
            indptr.append(len(indices))
        return csr_matrix((np.asarray(data, dtype=np.float64), np.asarray(indices, dtype=np.int64),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(rows), len(index)))


class _Fitted:
    """Vocabulary + scaler + classifier, or a constant when train has one class."""

    def __init__(self, rows: list[dict[str, float]], labels: list[Any]):
        from sklearn.preprocessing import MaxAbsScaler

        self.classes = sorted(set(labels), key=repr)
        self.constant = self.classes[0] if len(self.classes) == 1 else None
        if self.constant is not None:
            return
        self.vec = _Vocabulary(rows)
        self.scale = MaxAbsScaler()
        x = self.scale.fit_transform(self.vec.transform(rows))
        index = {c: i for i, c in enumerate(self.classes)}
        self.clf = _model(len(self.classes)).fit(x, [index[v] for v in labels])

    def proba(self, rows: list[dict[str, float]]):
        """Class scores per row (probabilities; one-vs-rest for > 2 classes), columns in
        ``self.classes`` order."""
        import numpy as np

        if self.constant is not None:
            return np.ones((len(rows), 1))
        p = self.clf.predict_proba(self.scale.transform(self.vec.transform(rows)))
        out = np.zeros((len(rows), len(self.classes)))
        out[:, self.clf.classes_] = p
        return out


class _Regressed:
    """Ridge regression for numbers with many distinct train values (volumes in mL, ...):
    the prediction is rounded to an integer when every train value is one."""

    constant = None

    def __init__(self, rows: list[dict[str, float]], values: list[float], integers: bool):
        from sklearn.linear_model import Ridge
        from sklearn.preprocessing import MaxAbsScaler

        self.integers = integers
        self.vec = _Vocabulary(rows)
        self.scale = MaxAbsScaler()
        self.reg = Ridge(alpha=1.0).fit(self.scale.fit_transform(self.vec.transform(rows)), values)

    def predict(self, rows: list[dict[str, float]]) -> list[float | int]:
        y = self.reg.predict(self.scale.transform(self.vec.transform(rows)))
        return [int(round(v)) if self.integers else round(float(v), 6) for v in y]


class TemplateLearner:
    """A text-only learner for one template's answer type, fitted on its train items."""

    def __init__(self, answer_type: str, train: Sequence[Item], views: Sequence[_View],
                 option_row: Callable[[_View, tuple[str, ...], int], dict[str, float]] | None = None):
        self.answer_type = answer_type
        self.selects = ANSWER_TYPES[answer_type].selects  # choice items: one row per option
        self.constant = _constant(train)
        self.option_row = option_row or (lambda view, opts, i: option_features(
            view[1], opts[i], i, opts[:i] + opts[i + 1:]))
        if self.selects:
            rows, labels = [], []
            for it, view in zip(train, views, strict=False):
                gold = set(answer_of(it)) if self.selects == "many" else {it.answer.value}
                opts = tuple(it.options or ())
                for i in range(len(opts)):
                    rows.append(self.option_row(view, opts, i))
                    labels.append(int(i in gold))
            self.fitted = _Fitted(rows, labels)
            # multi-choice: how often each answer size is right in train (the decision prior)
            self.sizes = Counter(len(answer_of(it)) for it in train) if self.selects == "many" else Counter()
        elif len({answer_of(it) for it in train}) > MAX_NUMBER_CLASSES:
            self.fitted = _Regressed([v[1] for v in views], [float(answer_of(it)) for it in train],
                                     all(isinstance(answer_of(it), int) for it in train))
        else:
            self.fitted = _Fitted([v[1] for v in views], [answer_of(it) for it in train])

    def predict(self, items: Sequence[Item], views: Sequence[_View]) -> list[Any]:
        if not items:
            return []
        f = self.fitted
        if self.selects:
            rows, owner = [], []
            for n, (it, view) in enumerate(zip(items, views, strict=False)):
                opts = tuple(it.options or ())
                for i in range(len(opts)):
                    rows.append(self.option_row(view, opts, i))
                    owner.append((n, i))
            if f.constant is not None:
                p = [float(f.constant) for _ in rows]
            else:
                p = list(f.proba(rows)[:, f.classes.index(1)])
            per: list[list[tuple[int, float]]] = [[] for _ in items]
            for (n, i), pi in zip(owner, p, strict=False):
                per[n].append((i, pi))
            if self.selects == "one":
                return [max(s, key=lambda t: (t[1], -t[0]))[0] if s else None for s in per]
            return [likeliest_subset(dict(s), self.sizes) for s in per]
        if isinstance(f, _Regressed):
            return f.predict([v[1] for v in views])
        if f.constant is not None:
            return [f.constant for _ in items]
        proba = f.proba([v[1] for v in views])
        return [f.classes[int(j)] for j in proba.argmax(axis=1)]


def likeliest_subset(p: dict[int, float], sizes: Counter[int]) -> tuple[int, ...]:
    """The answer set most likely given per-option probabilities ``p`` and the train
    frequency of each answer size (``sizes``). Each option's evidence is its odds over the
    train base rate (the share of options right, implied by ``sizes``), so options at the
    base rate leave the size prior alone: "p > 0.5 per option" picked every option whenever
    most options are right on average, and so could never flag a leak."""
    from itertools import combinations

    eps = 1e-9
    opts = sorted(p)
    total = sum(sizes.values())
    if not opts or not total:
        return tuple(i for i in opts if p[i] > 0.5)
    base = sum(k * c for k, c in sizes.items()) / (total * len(opts))
    base = min(max(base, eps), 1 - eps)
    best: tuple[float, tuple[int, ...]] = (-math.inf, ())
    for k in sorted(sizes):
        if k > len(opts):
            continue
        prior = math.log(sizes[k] / total) - math.log(math.comb(len(opts), k))
        for sub in combinations(opts, k):
            ll = prior + sum(math.log(max(p[i], eps) / base) if i in sub
                             else math.log(max(1 - p[i], eps) / (1 - base)) for i in opts)
            if ll > best[0] + 1e-12:
                best = (ll, sub)
    return best[1]


class TextOnlyGuesser:
    """Per-template text-only learners fitted on train items: the audit's and the ``prior``
    baseline's guesser. Templates of other answer types have none."""

    def __init__(self, train: Sequence[Item], studies: dict[str, Study] | None = None,
                 frames: Callable[[Item], list[int]] | None = None):
        self.studies = studies or {}
        self.frames = frames or FramesShown(studies)
        self._text: dict[tuple, dict[str, float]] = {}
        self._options: dict[tuple, dict[str, float]] = {}
        by_template: dict[str, list[Item]] = defaultdict(list)
        for it in train:
            if it.answer.type in AUDITED_TYPES:
                by_template[it.template].append(it)
        self.learners: dict[str, TemplateLearner] = {}
        for template, group in sorted(by_template.items()):
            types = {it.answer.type for it in group}
            if len(types) == 1:
                self.learners[template] = TemplateLearner(types.pop(), group, self.views(group),
                                                          self.option_row)

    def view(self, item: Item, frames: Sequence[int] | None = None) -> _View:
        """(key, features) of what the model sees; memoized: prompts repeat a lot."""
        study = self.studies.get(item.study_id)
        shown = tuple(self.frames(item) if frames is None else frames)
        key = (item.question, shown, study.frame_size if study else None)
        feats = self._text.get(key)
        if feats is None:
            feats = self._text[key] = text_features(item, shown, key[2])
        return key, feats

    def option_row(self, view: _View, options: tuple[str, ...], position: int) -> dict[str, float]:
        key = (view[0], options, position)
        row = self._options.get(key)
        if row is None:
            row = self._options[key] = option_features(
                view[1], options[position], position, options[:position] + options[position + 1:])
        return row

    def views(self, items: Sequence[Item]) -> list[_View]:
        return [self.view(it) for it in items]

    def predict(self, items: Sequence[Item], frames: Sequence[Sequence[int]] | None = None) -> list[Any]:
        """Predicted answer values (None where the template has no learner)."""
        out: list[Any] = [None] * len(items)
        groups: dict[str, list[int]] = defaultdict(list)
        for n, it in enumerate(items):
            if it.template in self.learners and it.answer.type == self.learners[it.template].answer_type:
                groups[it.template].append(n)
        for template, idx in groups.items():
            group = [items[n] for n in idx]
            views = [self.view(items[n], None if frames is None else frames[n]) for n in idx]
            for n, p in zip(idx, self.learners[template].predict(group, views), strict=False):
                out[n] = p
        return out


class LabelRateRule:
    """Per split label rates: each option text's train hit rate (times right / times shown);
    ``least`` picks the option least often right in train, else the most often right.

    Balance pooled over splits makes a label's held-out hit rate the mirror image of its train
    one, so "least often right in train" wins in val + test; per split balance leaves both rules
    at chance. Multi-choice: the likeliest answer set with the rates (or 1 - rate) as per-option
    probabilities."""

    def __init__(self, train: Sequence[Item], least: bool):
        self.least = least
        shown: Counter[str] = Counter()
        right: Counter[str] = Counter()
        for it in train:
            gold = set(answer_of(it)) if ANSWER_TYPES[it.answer.type].selects == "many" else {it.answer.value}
            for i, opt in enumerate(it.options or []):
                shown[opt] += 1
                right[opt] += i in gold
        self.mean = sum(right.values()) / max(sum(shown.values()), 1)
        self.rate = {o: right[o] / shown[o] for o in shown}
        self.sizes = Counter(len(answer_of(it)) for it in train
                             if ANSWER_TYPES[it.answer.type].selects == "many")

    def predict(self, items: Sequence[Item]) -> list[Any]:
        out: list[Any] = []
        for it in items:
            rates = [self.rate.get(o, self.mean) for o in it.options or []]
            if not rates:
                out.append(None)
            elif ANSWER_TYPES[it.answer.type].selects == "many":
                p = {i: (1 - r if self.least else r) for i, r in enumerate(rates)}
                out.append(likeliest_subset(p, self.sizes))
            else:
                sign = 1 if self.least else -1
                out.append(min(range(len(rates)), key=lambda i: (sign * rates[i], i)))
        return out


# --------------------------------------------------------------------------- audit


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact binomial interval of k successes in n trials."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _answer_rate_reference(train: Sequence[Item], held: Sequence[Item]) -> float:
    """Accuracy of guessing at random from the train answer distribution, scored on val+test:
    the reference for templates whose items carry no chance (counts). Unlike the best
    constant it is not itself a shortcut: a skewed answer distribution lets the constant
    beat it, and the audit flags that."""
    tr = Counter(answer_of(it) for it in train)
    he = Counter(answer_of(it) for it in held)
    return sum(tr[v] / len(train) * he[v] / len(held) for v in tr)


def _learners(template: str, train: list[Item], held: list[Item],
              guesser: TextOnlyGuesser, const: Any, reference_given: bool) -> dict[str, list[Any]]:
    """Predictions on ``held`` of every learner the audit tries on one template."""
    preds: dict[str, list[Any]] = {"linear": guesser.predict(held)}
    if ANSWER_TYPES[held[0].answer.type].selects:
        for least, name in ((True, "least_right_in_train"), (False, "most_right_in_train")):
            preds[name] = LabelRateRule(train, least).predict(held)
    if not reference_given:  # the constant is a learner only where it is not the reference
        preds["constant"] = [const] * len(held)
    return preds


def _group_row(template: str, train: list[Item], held: list[Item],
               guesser: TextOnlyGuesser) -> dict[str, Any]:
    types = sorted({it.answer.type for it in train + held})
    chances = [it.chance for it in held if it.chance is not None]
    row: dict[str, Any] = {
        "answer_type": types[0] if len(types) == 1 else types,
        "n_train": len(train),
        "n": len(held),
        "chance": _r(sum(chances) / len(chances)) if chances and len(chances) == len(held) else None,
    }
    if len(types) != 1 or types[0] not in AUDITED_TYPES:
        row["status"] = STATUS_NOT_AUDITED if len(types) == 1 else "not audited (mixed answer types)"
        row["flagged"] = False
        return row
    if len(train) < MIN_TRAIN or len(held) < MIN_EVAL:
        row["status"] = "insufficient"
        row["reason"] = (f"needs >= {MIN_TRAIN} train and >= {MIN_EVAL} val+test items, "
                         f"has {len(train)} and {len(held)}")
        row["flagged"] = False
        return row
    const = _constant(train)
    const_k = sum(is_correct(it, const) for it in held)
    # grades are skewed by nature and reported beside the constant answer (docs/knee.md):
    # their reference stays the constant; counts are compared with guessing
    kind = "chance" if row["chance"] is not None else "constant" if types[0] == "grade" else "guess"
    reference = {"chance": row["chance"], "constant": const_k / len(held),
                 "guess": _answer_rate_reference(train, held)}[kind]
    preds = _learners(template, train, held, guesser, const, kind != "guess")
    confidence = 1 - (1 - CONFIDENCE) / len(preds)  # Bonferroni over the learners tried
    learners: dict[str, dict[str, Any]] = {}
    for name, pred in preds.items():
        k = sum(is_correct(it, p) for it, p in zip(held, pred, strict=False))
        lo, hi = clopper_pearson(k, len(held), confidence)
        tail = "above" if lo > reference + 1e-12 else "below" if hi < reference - 1e-12 else None
        learners[name] = {"accuracy": _r(k / len(held)), "correct": k, "ci": [_r(lo), _r(hi)],
                          "flag": tail}
    flagged_by = sorted(n for n, r in learners.items() if r["flag"])
    flagged = bool(flagged_by)
    row.update({
        "constant": {"answer": list(const) if isinstance(const, tuple) else const,
                     "accuracy": _r(const_k / len(held)), "correct": const_k},
        "learner": learners["linear"],  # the prior baseline's learner
        "learners": learners,
        "reference": {"chance": "chance", "constant": "constant", "guess": "train answer distribution"}[kind],
        "reference_accuracy": _r(reference),
        "flagged_by": flagged_by,
        "flagged": flagged,
        "status": "flagged" if flagged else "pass",
    })
    return row


def audit_items(items: Sequence[Item], studies: Iterable[Study] | None = None,
                frames: FramePolicy = DEFAULT_FRAMES) -> dict[str, Any]:
    """The audit of a dataset's items: per template (headline items) and per
    prior-answerable template, with a summary; unrendered volume-level items show the frames
    of ``frames``, the dataset's policy. Deterministic: same items -> same dict."""
    from voxqa.dataset.folder import no_gc

    with no_gc():  # many small objects, no cycles: GC passes over the items only cost time
        return _audit_items(items, studies, frames)


def _audit_items(items: Sequence[Item], studies: Iterable[Study] | None, policy: FramePolicy) -> dict[str, Any]:
    by_id = {s.id: s for s in studies or []}
    frames = FramesShown(by_id, policy)
    groups: dict[tuple[bool, str], dict[str, list[Item]]] = defaultdict(lambda: {"train": [], "held": []})
    for it in items:
        groups[(it.prior_answerable, it.template)]["train" if it.split == "train" else "held"].append(it)
    out: dict[str, dict[str, Any]] = {"templates": {}, "prior_answerable": {}}
    for prior in (False, True):
        keys = sorted(t for p, t in groups if p == prior)
        train = [it for t in keys for it in groups[(prior, t)]["train"]]
        guesser = TextOnlyGuesser(train, by_id, frames)
        for t in keys:
            g = groups[(prior, t)]
            out["prior_answerable" if prior else "templates"][t] = _group_row(t, g["train"], g["held"], guesser)
    head = out["templates"]
    flagged = sorted(t for t, r in head.items() if r["status"] == "flagged")
    insufficient = sorted(t for t, r in head.items() if r["status"] == "insufficient")
    status = "flagged" if flagged else "insufficient" if insufficient else "pass"
    return {
        "version": AUDIT_VERSION,
        "status": status,
        "flagged": flagged,
        "insufficient": insufficient,
        "prior_answerable_flagged": sorted(t for t, r in out["prior_answerable"].items() if r["flagged"]),
        "templates": head,
        "prior_answerable": out["prior_answerable"],
        "frames_shown_from": dict(sorted(Counter(frames.source(it) for it in items).items())),
        "method": {
            "learner": "per template: logistic regression (scikit-learn liblinear, C=1, random_state=0) "
                       "on max-abs scaled sparse features (one-vs-rest for > 2 classes); choice: per-option scores, argmax; "
                       "multi_choice: per-option probabilities, the likeliest answer set given the train "
                       "frequency of answer sizes (exact match); "
                       f"number/grade: classes = train values (ridge regression, rounded for "
                       f"integers, above {MAX_NUMBER_CLASSES} distinct values)",
            "rules": "choice / multi_choice: each option's train hit rate (times right / times shown), "
                     "the option least often right in train and the one most often right; templates "
                     "without chance: the most frequent train answer",
            "features": "question words (uni+bigrams), quoted box geometry (centre, width, height, "
                        "area as fractions of the frame), other numbers as tokens, frame indices "
                        "shown (tokens, count, min, max, span, distinct gaps); options: text, "
                        "position, words, crossed with question words, geometry, frame summary, "
                        "each other option and the whole option set",
            "fit_on": "train", "scored_on": "val+test",
            "interval": f"Clopper-Pearson exact, {CONFIDENCE:.0%} Bonferroni-corrected over the learners of a template",
            "flag_rule": "flagged when any learner's interval lies wholly above or wholly below the "
                         "reference (the mean item chance; where items have none: guessing from the "
                         "train answer distribution, for grades the constant answer); below "
                         "chance is a reversible leak",
            "minimum": {"train": MIN_TRAIN, "eval": MIN_EVAL},
            "answer_types_audited": list(AUDITED_TYPES),
        },
    }


def audit_summary(audit: dict[str, Any]) -> dict[str, Any]:
    """What the manifest carries: status, flagged and insufficient templates, per-template numbers."""
    return {
        "file": AUDIT,
        "status": audit["status"],
        "flagged": audit["flagged"],
        "insufficient": audit["insufficient"],
        "prior_answerable_flagged": audit["prior_answerable_flagged"],
        "minimum": audit["method"]["minimum"],
        "templates": {t: {k: r.get(k) for k in ("n", "chance", "status")}
                      | {"learner_accuracy": r.get("learner", {}).get("accuracy"),
                         "ci_low": (r.get("learner", {}).get("ci") or [None])[0]}
                      for t, r in audit["templates"].items() if r["status"] != STATUS_NOT_AUDITED},
    }


def attach_audit(manifest: dict[str, Any], items: Sequence[Item],
                 studies: Iterable[Study]) -> dict[str, Any]:
    """The end of every build: audit the items, put the summary in ``manifest["audit"]``;
    returns the full audit for :func:`write_audit`."""
    audit = audit_items(items, studies, recorded_policy(manifest))
    manifest["audit"] = audit_summary(audit)
    return audit


def write_audit(folder: Path, audit: dict[str, Any]) -> None:
    """Write ``audit.json`` (atomically)."""
    write_json(folder / AUDIT, audit)


def audit_dataset(folder: Path, *, update_manifest: bool = True) -> dict[str, Any]:
    """Audit a dataset folder: writes ``audit.json`` and the manifest's ``audit`` entry."""
    from voxqa.dataset.folder import MANIFEST, read_items, read_json, read_studies

    folder = Path(folder)
    manifest = read_json(folder / MANIFEST) if (folder / MANIFEST).is_file() else None
    result = audit_items(read_items(folder), read_studies(folder), recorded_policy(manifest or {}))
    write_audit(folder, result)
    if update_manifest and manifest is not None:
        manifest["audit"] = audit_summary(result)
        write_json(folder / MANIFEST, manifest)
    return result


def audit_rows(audit: dict[str, Any]) -> list[dict[str, Any]]:
    """Flat rows (group, template, n, chance, constant, linear learner, ci, reference, the
    learners that flag it, status) for tables."""
    rows = []
    for group in ("templates", "prior_answerable"):
        for t, r in audit.get(group, {}).items():
            learner = r.get("learner") or {}
            ci = learner.get("ci")
            rows.append({
                "group": "headline" if group == "templates" else "prior-answerable",
                "template": t, "answer_type": r["answer_type"], "n_train": r["n_train"], "n": r["n"],
                "chance": r.get("chance"), "constant": (r.get("constant") or {}).get("accuracy"),
                "learner": learner.get("accuracy"), "ci": ci, "flagged": r.get("flagged", False),
                "reference": r.get("reference_accuracy", r.get("chance")),
                "flagged_by": [f"{n} {r['learners'][n]['accuracy']} ({r['learners'][n]['flag']})"
                               for n in r.get("flagged_by", [])],
                "status": r["status"], "reason": r.get("reason", ""),
            })
    return rows


def assert_unflagged(audit: dict[str, Any]) -> None:
    """Raise AssertionError naming every flagged headline template with the numbers of each
    learner that flags it."""
    bad = {t: {name: (lr["accuracy"], lr["ci"], lr["flag"]) for name, lr in r["learners"].items() if lr["flag"]}
           | {"reference": r["reference_accuracy"], "n": r["n"]}
           for t, r in audit["templates"].items() if r.get("flagged")}
    assert not bad, "text-only learner off chance (acc, CI, tail): " + "; ".join(
        f"{t}: {v}" for t, v in sorted(bad.items()))


def fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"
