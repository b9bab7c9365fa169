"""RefRad2D training targets as RadGrounder's released code writes them
(github.com/lmb-freiburg/radgrounder @ a8f332b; every rule cited in ``docs/reports.md``).

One target per (report sentence, axial frame) where some of the sentence's structures are
visible: the sentence with each keyword wrapped in place, ``<p bbox=<locX1><locY1><locX2><locY2>
id=<segNNN>>keyword</p>`` (``refrad2d_detect.add_detection_tokens`` L352-360), after the prompt
``"<image>\\n{prefix}\\nCaption this image and detect keywords: "`` (L189, L294-299; voxqa has
no clinical prefix, RadGrounder's ``prefix_style`` "none"). Boxes are binned as
``PROFILES["radgrounder"]`` (``boxes.spaces.ResizedBins``: the 224 px resize first). ``NNN`` is
RadGrounder's class id, never the study's label id: its 121 classes keep TotalSegmentator's CT
ids and append the MR-only ones (``label_map/merged_label_map.json``), and MR label maps are
remapped into them (``total_mr_id_2_frerad_id.json``, MR aorta 23 -> 52) before boxes are taken
(``step4_build_grounding_dataset.py`` L84-87, L116-117).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

from voxqa.anatomy.labelnames import TOTALSEG_CT, TOTALSEG_MR, canonical_name
from voxqa.boxes.profiles import PROFILES
from voxqa.boxes.syntax import RadGrounderTags
from voxqa.radreports.extract_rules import RuleExtractor
from voxqa.radreports.lexicon import LESION, MIDLINE
from voxqa.radreports.verify import parts

#: RadGrounder's class ids: TotalSegmentator CT ids 1-117, then the MR-only classes in the
#: order ``merged_label_map.json`` ships (not the sorted order ``step2_unify_labels.py`` would
#: give: that would make lung_left 119 and intervertebral_discs 118).
CLASS_IDS: dict[str, int] = {name: i for i, name in enumerate(TOTALSEG_CT, 1)} | {
    "lung_left": 118, "lung_right": 119, "intervertebral_discs": 120, "vertebrae": 121}
#: TotalSegmentator-MR label id -> RadGrounder class id (``total_mr_id_2_frerad_id.json``).
MR_TO_CLASS: dict[int, int] = {i: CLASS_IDS[name] for i, name in enumerate(TOTALSEG_MR, 1)}
#: The grounded-caption prompt (``load_detection``) per report language.
PROMPTS = {"en": "Caption this image and detect keywords:",
           "de": "Beschreibe dieses Bild und detektiere Schlüsselwörter:"}


def class_id(label: str) -> int | None:
    """RadGrounder's class id of a structure name, None outside its 121 classes."""
    return CLASS_IDS.get(canonical_name(label))


def prefix(language: str) -> str:
    """The model input before the target, as ``RefRad2DDetect.__getitem__`` builds it (L189)
    with an empty clinical prefix."""
    return f"<image>\n\n{PROMPTS[language]} "


@dataclass(frozen=True)
class Span:
    """Where a sentence names structures: the keyword's characters (side words included,
    "left kidney", "Niere links") and the segmented structures it stands for."""

    start: int
    end: int
    names: tuple[str, ...]


@cache
def _extractor() -> RuleExtractor:
    return RuleExtractor()


def keyword_spans(sentence: str, language: str, names: Sequence[str]) -> list[Span]:
    """The keywords of ``sentence`` by the rule lexicon, whichever extractor read its claims."""
    return list(_keyword_spans(sentence, language, tuple(names)))


@lru_cache(maxsize=4096)  # one sentence is tagged on every frame that shows its keywords
def _keyword_spans(sentence: str, language: str, names: tuple[str, ...]) -> tuple[Span, ...]:
    spans: list[Span] = []
    for men in _extractor().mentions(sentence, language):
        if men.base == MIDLINE:
            continue
        start, end = men.start, max(men.end, men.after)
        if men.side_span is not None and men.side in ("left", "right"):  # "left kidney", not "both kidneys"
            start, end = min(start, men.side_span[0]), max(end, men.side_span[1])
        if any(s.start <= start and end <= s.end for s in spans):
            continue  # the lesion of a compound ("Nierenzyste") is inside the organ's keyword
        terms = [LESION] if men.base == LESION else men.labels()
        found = tuple(dict.fromkeys(p for t in terms for p in parts(t, names)))
        spans.append(Span(start, end, found))
    return tuple(spans)


@dataclass(frozen=True)
class Target:
    """One RefRad2D target: the tagged sentence, its tags, and grounded structures it could
    not tag (with why)."""

    text: str
    tags: list[dict]
    left_out: list[dict]


def caption_target(sentence: str, language: str, boxes: Mapping[str, Sequence[int]], pixels: Mapping[str, int],
                   names: Sequence[str], width: int, height: int) -> Target:
    """``sentence`` with each keyword naming a structure of ``boxes`` (those visible on the
    frame) wrapped in its RadGrounder tag. A keyword standing for several visible structures
    ("kidneys") is tagged with the one with most pixels on the frame: RadGrounder's keyword
    table holds one class per keyword."""
    space, syntax = PROFILES["radgrounder"].space, RadGrounderTags()
    out, tags, last, tagged = [], [], 0, set()
    spans = keyword_spans(sentence, language, names)
    for span in spans:
        visible = [n for n in span.names if n in boxes and class_id(n) is not None]
        if not visible:
            continue
        label = max(visible, key=lambda n: (pixels.get(n, 0), n))
        bins = space.encode(boxes[label], width, height)
        keyword = sentence[span.start:span.end]
        out += [sentence[last:span.start], syntax.write(bins, keyword, class_id(label))]
        last = span.end
        tagged.add(label)
        tags.append({"keyword": keyword, "label": label, "class_id": class_id(label), "bins": bins})
    out.append(sentence[last:])
    left_out = [{"label": n, "reason": "no RadGrounder class" if class_id(n) is None
                 else "another structure tagged on its keyword" if any(n in s.names for s in spans)
                 else "no keyword in the sentence"}
                for n in sorted(boxes) if n not in tagged]
    return Target("".join(out), tags, left_out)
