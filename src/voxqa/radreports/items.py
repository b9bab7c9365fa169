"""Items from verified report claims: CT-SpatialVQA-style questions (supported claims only)
and RefRad2D-style per-frame grounding (keywords the report mentions positively).

Why only supported claims: CT-SpatialVQA kept GPT-4o's questions an LLM called "spatial and
relevant" and never checked them against the image; here a question exists only when the
segmentation confirms the sentence it comes from, and its reasoning quotes that sentence
and the geometry that confirmed it. Questions use the report's language (``Item.language``).

Balance (the blind audit): closed questions come in both orders from one claim ("is A
anterior or posterior to B" and "... B ... A"), so answers are balanced per pair of names;
left/right questions (a structure's side, "is A to the right or left of B") follow the spatial
family's rules: never about a structure whose name carries its side, and each with its mirrored
twin (the study flipped along patient x: same text, the answer from the twin's geometry), so a
reader of anatomical priors gets one of each pair right and they count as headline items;
yes/no questions whose negatives cannot come from the same claim (contact, presence) are
balanced per (split, template, names[, frame]) and the rest counted as not asked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from voxqa.anatomy.labelnames import display_name, is_lesion, side_of
from voxqa.anatomy.relations import SegGeometry
from voxqa.anatomy.structures import Structure
from voxqa.radreports.claims import Claim
from voxqa.radreports import lexicon
from voxqa.radreports.radgrounder import Target, caption_target
from voxqa.radreports.verify import AXES, parts
from voxqa.schema import Evidence, Item
from voxqa.tasks.base import BuildContext, StudyView, balance_candidates, make_item
from voxqa.tasks.spatial import CATEGORIES, mirrored_id

TASK = "spatial"
#: A keyword is visible on a frame when its mask has at least this many pixels there.
MIN_FRAME_PIXELS = 20
CATEGORY = {"side": "laterality", "left_of": "laterality", "right_of": "laterality",
            "superior": "vertical", "inferior": "vertical", "anterior": "anterior_posterior",
            "posterior": "anterior_posterior", "medial": "medial_lateral", "lateral": "medial_lateral",
            "adjacent": "adjacency", "within": "adjacency", "larger": "size", "present": "presence"}
#: (higher word, lower word) per world axis, as a question says them
WORDS = {
    "en": {0: ("right", "left"), 1: ("anterior", "posterior"), 2: ("superior", "inferior"),
           "side": ("right", "left"), "yes": ("yes", "no")},
    "de": {0: ("rechts", "links"), 1: ("ventral", "dorsal"), 2: ("kranial", "kaudal"),
           "side": ("rechts", "links"), "yes": ("ja", "nein")},
}
# (key, side, item): key None = free; side True/False = yes/no to balance within key
Candidate = tuple[tuple[str, ...] | None, bool | None, Item]


def _n(label: str, language: str, case: str = "nom") -> str:
    return lexicon.name(label, language, case)


@dataclass
class ReportStudy:
    """One study's report facts for items: its verified claims, language, findings text, and
    per-structure pixel counts per frame (for visibility)."""

    claims: list[Claim]
    language: str
    findings: str
    frame_pixels: dict[str, dict[int, int]]
    label_ids: dict[str, int]


def frame_pixels(labels: np.ndarray | None, masks: Mapping[str, np.ndarray] | None,
                 names: Mapping[int, str]) -> dict[str, dict[int, int]]:
    """Pixels of every structure on every axial frame (RAS+ arrays, frames along k): one
    bincount per frame for a label map, not one full-volume mask per label."""
    out: dict[str, dict[int, int]] = {}
    if labels is not None:
        top = max(names, default=0)
        for k in range(labels.shape[2]):
            counts = np.bincount(labels[:, :, k].ravel(), minlength=top + 1)
            for label_id, name in names.items():
                if label_id and counts[label_id]:
                    out.setdefault(name, {})[k] = int(counts[label_id])
    for name, mask in (masks or {}).items():
        counts = np.count_nonzero(mask, axis=(0, 1))
        found = {int(k): int(c) for k, c in enumerate(counts) if c}
        if found:
            out[name] = found
    return out


def _area(b: Sequence[int]) -> int:
    return (b[2] - b[0]) * (b[3] - b[1])


def _evidence(s: Structure, g: SegGeometry) -> Evidence:
    """The structure's box on the shown frame where it is largest (volume-level items)."""
    frames = [k for k in s.frame_boxes if g.shown_frames is None or k in g.shown_frames] or list(s.frame_boxes)
    k = max(frames, key=lambda f: (_area(s.frame_boxes[f]), -f))
    return Evidence(label=s.name, frame=k, box=s.frame_boxes[k])


def _first_of_each(candidates: list[Candidate], ctx: BuildContext) -> list[Candidate]:
    """A report that states one fact twice ("The IVC lies to the right of the aorta" in two
    sentences) asks it once: the first sentence's item; each repeat is counted."""
    seen: set[str] = set()
    kept: list[Candidate] = []
    for c in candidates:
        if c[2].id in seen:
            ctx.skip(c[2].template, "the report states a fact already asked")
            continue
        seen.add(c[2].id)
        kept.append(c)
    return kept


class ReportQuestions:
    """Builds report items for all studies at once (balancing needs the population), from
    each view's ``radreport`` (a ReportStudy; views without one are not asked about)."""

    name = "radreports"

    def __init__(self, min_pixels: int = MIN_FRAME_PIXELS):
        self.min_pixels = min_pixels
        #: caption-grounding item id -> its report sentence, and its RefRad2D target
        self.sentences: dict[str, str] = {}
        self.radgrounder: dict[str, Target] = {}

    def generate(self, views: Sequence[StudyView], ctx: BuildContext) -> list[Item]:
        by_id = {v.id: v for v in views}
        candidates: list[Candidate] = []
        out: list[Item] = []
        for v in views:
            rep: ReportStudy | None = v.radreport
            if v.geometry.mirrored or rep is None:
                continue
            twin = by_id.get(mirrored_id(v.id))
            supported = [c for c in rep.claims if c.verdict == "supported"]
            for claim in supported:
                candidates += self._claim(v, twin, claim, rep.language, ctx)
            candidates += self._frames(v, rep, ctx)
            if any(c.verdict == "contradicted" for c in rep.claims):  # not a target to learn
                ctx.skip("captioning/report_generation", "the report contradicts its segmentation")
            else:
                out += self._report(v, rep)
        return out + balance_candidates(_first_of_each(candidates, ctx), ctx, "reports", "dropped to balance")

    # -- CT-SpatialVQA-style --------------------------------------------------------------
    def _item(self, v: StudyView, claim: Claim, kind: str, label: str, question: str, answer: dict,
              text: str, evidence: list[Evidence], chance: float | None, options: list[str] | None = None,
              variant: str | None = None, language: str = "en", task: str = TASK,
              frame: int | None = None, prior: bool = False) -> Item:
        cites = "; ".join(f"Frame {e.frame}: [{', '.join(map(str, e.box))}] {e.label}" for e in evidence)
        said = "Befund" if language == "de" else "The report says"
        verified = f"Verified on the segmentation: {claim.reason}"
        if v.geometry.mirrored:  # the sentence is about the original; the twin's answer rests on its own geometry
            g, by = v.geometry, v.geometry.by_name()
            xs = ", ".join(f"{e.label} centroid x = {by[e.label].centroid_ras[0]:.1f} mm" for e in evidence)
            verified = (f"This is the study mirrored along patient x (+x is the patient's right): "
                        f"midline x = {g.midline_x:.1f} mm, {xs}")
        reasoning = (f"{said}: \"{claim.sentence}\" {verified}."
                     + (f" Boxes: {cites}." if cites else "") + f" Answer: {text}.")
        item = make_item(v, task=task, subtask=f"report_{CATEGORY[claim.relation]}", frame=frame, label=label,
                         question=question, answer=answer, answer_text=text, evidence=evidence,
                         reasoning=reasoning, chance=chance, options=options,
                         category=CATEGORIES[CATEGORY[claim.relation]], variant=variant, kind=kind)
        item.language = language
        item.prior_answerable = prior
        return item

    def _claim(self, v: StudyView, twin: StudyView | None, claim: Claim, lang: str,
               ctx: BuildContext) -> list[Candidate]:
        g: SegGeometry = v.geometry
        by = g.by_name()
        names = [s.name for s in g.structures]
        groups = [[by[p] for p in parts(t, names) if p in by] for t in claim.structures]
        words = WORDS[lang]
        if claim.relation == "present":  # yes: its key-frame box; no: an absence the geometry showed
            yes = claim.polarity == "positive"
            label = claim.structures[0]
            if yes and len(groups[0]) != 1:
                ctx.skip("detection/report_presence", "claim about a group of structures: no question")
                return []
            q = (f"Ist {_n(label, lang)} in diesem Volumen sichtbar?" if lang == "de"
                 else f"Is {_n(label, lang)} visible in this volume?")
            item = self._item(v, claim, "presence", label, q, {"type": "yes_no", "value": "yes" if yes else "no"},
                              words["yes"][0 if yes else 1], [_evidence(groups[0][0], g)] if yes else [],
                              0.5, language=lang, task="detection")
            return [((label,), yes, item)]
        if not all(len(gr) == 1 for gr in groups) or claim.polarity == "negative":
            ctx.skip("spatial/report", "claim about a group of structures or negated: no question")
            return []
        ss = [gr[0] for gr in groups]
        if claim.relation == "side":
            return self._side(v, twin, claim, ss[0], lang, ctx)
        a, b = ss
        ev = [_evidence(a, g), _evidence(b, g)]
        # relations between normal organs are anatomical knowledge (scored apart, as in spatial)
        prior = not (is_lesion(a.name) or is_lesion(b.name))
        out: list[Candidate] = []
        if claim.relation in AXES and AXES[claim.relation][0] == 0:
            return self._sides_of(v, twin, claim, a, b, lang, ctx)
        if claim.relation in AXES:
            axis, a_higher = AXES[claim.relation]
            hi_word, lo_word = words[axis]
            for first, second, first_higher in ((a, b, a_higher), (b, a, not a_higher)):
                word = hi_word if first_higher else lo_word
                if lang == "de":
                    q = f"Liegt {_n(first.name, lang)} {hi_word} oder {lo_word} {_n(second.name, lang, 'zu')}?"
                elif axis == 0:
                    q = f"Is {_n(first.name, lang)} to the {hi_word} or to the {lo_word} of {_n(second.name, lang)}?"
                else:
                    q = f"Is {_n(first.name, lang)} {hi_word} or {lo_word} to {_n(second.name, lang)}?"
                out.append((None, None, self._item(
                    v, claim, "choice", first.name, q, {"type": "choice", "value": [hi_word, lo_word].index(word)},
                    word, ev, 0.5, [hi_word, lo_word], variant=second.name, language=lang, prior=prior)))
            word = hi_word if a_higher else lo_word
            if lang == "en":
                word = f"{word} to"
            out.append((None, None, self._open(v, claim, a, b, word, ev, lang, prior)))
            return out
        if claim.relation in ("medial", "lateral", "larger"):
            keep = a if claim.relation in ("medial", "larger") else b
            for first, second in ((a, b), (b, a)):
                opts = [display_name(first.name), display_name(second.name)]
                if lang == "de":
                    asks = {"larger": "Was ist größer", "medial": "Was liegt näher an der Mittellinie",
                            "lateral": "Was liegt näher an der Mittellinie"}[claim.relation]
                    opts = [_n(first.name, lang), _n(second.name, lang)]
                else:
                    asks = "Which is larger" if claim.relation == "larger" else "Which is closer to the midline"
                q = f"{asks}: {opts[0]} {'oder' if lang == 'de' else 'or'} {opts[1]}?"
                right = opts[0] if keep is first else opts[1]
                out.append((None, None, self._item(
                    v, claim, "choice", first.name, q, {"type": "choice", "value": opts.index(right)}, right,
                    ev, 0.5, opts, variant=second.name, language=lang, prior=prior)))
            return out
        if claim.relation == "adjacent":
            q = (f"Grenzt {_n(a.name, lang)} an {_n(b.name, lang, 'acc')}?" if lang == "de"
                 else f"Does {_n(a.name, lang)} touch {_n(b.name, lang)}?")
            out.append(((min(a.name, b.name), max(a.name, b.name)), True, self._item(
                v, claim, "yes_no", a.name, q, {"type": "yes_no", "value": "yes"}, words["yes"][0], ev, 0.5,
                variant=b.name, language=lang, prior=prior)))
            word = "angrenzend an" if lang == "de" else "adjacent to"
            out.append((None, None, self._open(v, claim, a, b, word, ev, lang, prior)))
            return out
        word = "in" if lang == "de" else "within"
        return [(None, None, self._open(v, claim, a, b, word, ev, lang, prior))]

    def _open(self, v: StudyView, claim: Claim, a: Structure, b: Structure, word: str,
              ev: list[Evidence], lang: str, prior: bool) -> Item:
        """"Where is A relative to B?" with the verified relation as text (not audited)."""
        if lang == "de":
            q = f"Wo liegt {_n(a.name, lang)} im Verhältnis {_n(b.name, lang, 'zu')}?"
            text = f"{word} {_n(b.name, lang, 'acc' if word == 'angrenzend an' else 'dat' if word == 'in' else 'zu')}"
        else:
            q = f"Where is {_n(a.name, lang)} relative to {_n(b.name, lang)}?"
            text = f"{word} {_n(b.name, lang)}"
        return self._item(v, claim, "open", a.name, q, {"type": "text", "value": text}, text, ev, None,
                          variant=f"open-{b.name}", language=lang, prior=prior)

    def _side(self, v: StudyView, twin: StudyView | None, claim: Claim, s: Structure, lang: str,
              ctx: BuildContext) -> list[Candidate]:
        """Left or right, with the mirrored twin (same question, the side from the twin's
        geometry); never about a structure whose name says its side."""
        if side_of(s.name):
            ctx.skip("spatial/report_laterality", "side in the structure's name (the question would state it)")
            return []
        views = self._twins(v, twin, [s], ctx)
        if not views:
            return []
        words = WORDS[lang]["side"]
        q = (f"Liegt {_n(s.name, lang)} auf der rechten oder linken Körperseite?" if lang == "de"
             else f"Is {_n(s.name, lang)} on the patient's right or left side?")
        out = []
        for view in views:
            g = view.geometry
            t = g.by_name()[s.name]
            side = words[0] if t.centroid_ras[0] > g.midline_x else words[1]
            out.append(self._item(view, claim, "side", s.name, q, {"type": "choice", "value": list(words).index(side)},
                                  side, [_evidence(t, g)], 0.5, list(words), language=lang))
        return _paired(out, ctx)

    def _sides_of(self, v: StudyView, twin: StudyView | None, claim: Claim, a: Structure, b: Structure,
                  lang: str, ctx: BuildContext) -> list[Candidate]:
        """"Is A to the right or left of B?" (both orders, and the open "where" question), each
        with its mirrored twin: the same text, the answer from the twin's geometry. A reader of
        anatomical priors gets one of each pair right, so these are headline items; never
        about a structure whose name says its side."""
        if side_of(a.name) or side_of(b.name):
            ctx.skip("spatial/report_laterality", "side in a structure's name (the question would state it)")
            return []
        views = self._twins(v, twin, [a, b], ctx)
        if not views:
            return []
        hi_word, lo_word = WORDS[lang][0]
        per_view: list[list[Item]] = []
        for view in views:
            g = view.geometry
            by = g.by_name()
            ta, tb = by[a.name], by[b.name]
            ev = [_evidence(ta, g), _evidence(tb, g)]
            a_right = ta.centroid_ras[0] > tb.centroid_ras[0]
            items = []
            for first, second, first_right in ((ta, tb, a_right), (tb, ta, not a_right)):
                word = hi_word if first_right else lo_word
                if lang == "de":
                    q = f"Liegt {_n(first.name, lang)} {hi_word} oder {lo_word} {_n(second.name, lang, 'zu')}?"
                else:
                    q = f"Is {_n(first.name, lang)} to the {hi_word} or to the {lo_word} of {_n(second.name, lang)}?"
                items.append(self._item(
                    view, claim, "choice", first.name, q, {"type": "choice", "value": [hi_word, lo_word].index(word)},
                    word, ev, 0.5, [hi_word, lo_word], variant=second.name, language=lang))
            word = hi_word if a_right else lo_word
            items.append(self._open(view, claim, ta, tb, f"to the {word} of" if lang == "en" else word, ev, lang,
                                    False))
            per_view.append(items)
        out: list[Candidate] = []
        for pair in zip(*per_view, strict=True):
            out += _paired(list(pair), ctx)
        return out

    @staticmethod
    def _twins(v: StudyView, twin: StudyView | None, ss: Sequence[Structure],
               ctx: BuildContext) -> list[StudyView]:
        """The study and its mirrored twin, when the twin holds every structure asked about."""
        if twin is None or any(s.name not in twin.geometry.by_name() for s in ss):
            ctx.skip("spatial/report_laterality", "no mirrored twin")
            return []
        return [v, twin]

    # -- RefRad2D-style ---------------------------------------------------------------------
    def _frames(self, v: StudyView, rep: ReportStudy, ctx: BuildContext) -> list[Candidate]:
        """Per axial frame: detect-VQA for every structure the report mentions positively, and
        the caption grounding of each sentence whose keywords are visible on the frame."""
        g: SegGeometry = v.geometry
        by = g.by_name()
        names = sorted(rep.frame_pixels)
        mentioned: dict[str, list[Claim]] = {}
        for c in rep.claims:
            if c.polarity == "positive":
                for term in c.structures:
                    for p in parts(term, names):
                        mentioned.setdefault(p, []).append(c)
        out: list[Candidate] = []
        lang = rep.language
        yes_word, no_word = WORDS[lang]["yes"]
        for name in sorted(mentioned):
            pixels = rep.frame_pixels.get(name, {})
            for k in range(g.shape[2]):
                visible = pixels.get(k, 0) >= self.min_pixels and name in by and k in by[name].frame_boxes
                q = (f"Ist {_n(name, lang)} in diesem Bild zu sehen?" if lang == "de"
                     else f"Is {_n(name, lang)} present in this image?")
                ev = [Evidence(label=name, frame=k, box=by[name].frame_boxes[k])] if visible else []
                why = (f"{name} has {pixels.get(k, 0)} pixels on frame {k} (minimum {self.min_pixels})"
                       + (f": [{', '.join(map(str, ev[0].box))}]" if ev else ""))
                item = make_item(v, task="detection", subtask="report_detect", frame=k, label=name, question=q,
                                 answer={"type": "yes_no", "value": "yes" if visible else "no"},
                                 answer_text=yes_word if visible else no_word, evidence=ev,
                                 reasoning=f"{why}. Answer: {yes_word if visible else no_word}.", chance=0.5,
                                 category=CATEGORIES["presence"])
                item.language = lang
                out.append(((name, str(k)), visible, item))
        contradicted = {c.sentence for c in rep.claims if c.verdict == "contradicted"}
        if contradicted:
            ctx.skip("localization/report_grounding", "sentence contradicted by the segmentation", len(contradicted))
        for sentence in sorted({c.sentence for c in rep.claims if c.polarity == "positive"} - contradicted):
            keywords = sorted({p for c in rep.claims if c.sentence == sentence and c.polarity == "positive"
                               for t in c.structures for p in parts(t, names)})
            for k in range(g.shape[2]):
                grounded = [n for n in keywords if rep.frame_pixels.get(n, {}).get(k, 0) >= self.min_pixels
                            and n in by and k in by[n].frame_boxes]
                if grounded:
                    item = self._grounding(v, sentence, keywords, grounded, k, lang)
                    self.radgrounder[item.id] = caption_target(
                        sentence, lang, {n: by[n].frame_boxes[k] for n in grounded},
                        {n: rep.frame_pixels[n][k] for n in grounded}, names, *v.study.frame_size)
                    out.append((None, None, item))
        return out

    def _grounding(self, v: StudyView, sentence: str, keywords: list[str], grounded: list[str], k: int,
                   lang: str) -> Item:
        """The boxes of the sentence's keywords visible on frame ``k``. The question states the
        sentence and all its keywords (visible or not), so a prompt has one gold: a frame shows
        keywords of several sentences, and "caption this image" could mean any of them
        (RadGrounder's own target for the frame is ``self.radgrounder``)."""
        by = v.geometry.by_name()
        ev = [Evidence(label=n, frame=k, box=by[n].frame_boxes[k]) for n in grounded]
        caption = sentence + " " + "; ".join(f"{keyword(e.label, lang)} [{', '.join(map(str, e.box))}]" for e in ev)
        words = ", ".join(keyword(n, lang) for n in keywords)
        q = (f"Markiere in diesem Bild die Schlüsselwörter dieses Befundsatzes: \"{sentence}\" "
             f"Schlüsselwörter: {words}. Nenne jedes hier sichtbare Schlüsselwort mit seiner Box." if lang == "de"
             else f"Ground the keywords of this report sentence on this image: \"{sentence}\" "
             f"Keywords: {words}. Name each keyword visible here with its box.")
        # each box with the keyword it grounds, as the question names it: scored by keyword-box pairs (G-IoU)
        item = make_item(v, task="localization", subtask="report_grounding", frame=k, label=None, question=q,
                         answer={"type": "boxes", "value": [{"frame": e.frame, "box": list(e.box),
                                                             "keyword": keyword(e.label, lang)} for e in ev]},
                         answer_text=caption, evidence=ev,
                         reasoning=f"Keywords of \"{sentence}\" visible on frame {k}: "
                                   + "; ".join(f"Frame {k}: [{', '.join(map(str, e.box))}] {e.label}" for e in ev) + ".",
                         chance=None, variant=f"s{abs(hash_text(sentence)) % 10**8:08d}")
        item.language = lang
        self.sentences[item.id] = sentence
        return item

    def _report(self, v: StudyView, rep: ReportStudy) -> list[Item]:
        """The report-generation target (findings text) for training; only for reports
        whose claims the segmentation does not contradict."""
        q = "Schreibe den Befund zu diesem Volumen." if rep.language == "de" else "Write the findings for this volume."
        item = make_item(v, task="captioning", subtask="report_generation", frame=None, label=None, question=q,
                         answer={"type": "text", "value": rep.findings}, answer_text=rep.findings, evidence=[],
                         reasoning="The study's report findings.", chance=None)
        item.language = rep.language
        return [item]


def _paired(pair: list[Item], ctx: BuildContext) -> list[Candidate]:
    """An original item and its mirrored twin: same text, the twin's answer from its own
    geometry; the twin shares the original's id as ``pair_id``. A twin whose answer is not
    the other one (a structure on the midline) drops the pair."""
    original, mirrored = pair
    if original.question != mirrored.question or original.answer == mirrored.answer:
        ctx.skip("spatial/report_laterality", "mirrored twin not asked")
        return []
    return [(None, None, it.model_copy(update={"variant": variant, "pair_id": original.id}))
            for it, variant in ((original, "original"), (mirrored, "mirrored"))]


def keyword(label: str, language: str) -> str:
    """A grounded keyword as the report's language names it ("left kidney", "linke Niere")."""
    return lexicon.name(label, language).split(" ", 1)[1]


def hash_text(text: str) -> int:
    """A stable integer for a sentence (item ids must not depend on Python's hash seed)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
