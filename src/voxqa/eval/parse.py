"""Model replies -> typed answers: the one place that reads what a model wrote.

Scoring compares a typed prediction with the item's typed answer, so every reply goes
through ``parse_answer`` first. The parser reads exactly what the exports teach a model to
write (``voxqa.conversation``: ``{"reasoning": ..., "answer": ..., "bboxes": [...]}``), what
the prompt modes ask for (``voxqa.eval.prompts``) and the common free-text habits of
vision-language models. It never guesses: a box is read in the profile's own form and space
(``voxqa.boxes.profiles``; never inferred from the numbers' size, and another family's form
is refused), and a reply naming two different answers fails.

Every reply is first reduced to its answer (``read_reply``):

1. ``<think>...</think>`` and MedGemma's ``<unused94>thought ... <unused95>`` blocks are dropped, as is everything up to a ``</think>`` whose
   ``<think>`` was in the prompt and everything after an unclosed ``<think>`` (a truncated
   chain of thought has no answer); then markdown code fences and ``\\boxed{}`` wrappers.
2. If the text is or contains a JSON object with an ``"answer"`` key (the structured
   target), that field is the answer and its ``"bboxes"`` are kept as a fallback for box
   answers, whatever the prompt mode was. A structured reply cut off after its answer
   (the target writes ``bboxes`` last) still gives its ``"answer": <JSON value>``.
3. Else the text after the last answer phrase ("Answer:", "**Answer:**", "the (final)
   answer is") is the answer; short answers are read from its first non-empty line, so an
   explanation on the following lines cannot add letters or numbers.
4. Else the whole text is the answer, read more strictly (see the table).

Accepted formats per answer type (``scope``: first line after an answer phrase or the
structured ``answer`` field; ``whole``: the whole reply, when neither exists):

===============  ==========================================================================
yes_no           yes/no/true/false/y/n, any case: the first such word in scope; in whole
                 only the very first word counts ("Yes, ..." but not "There is no ...").
                 "not sure", "n/a", "yes/no" decide nothing -> failure.
choice           the exact text of exactly one option (case/whitespace-insensitive), else
                 one letter: "(B)", "B.", "B)", "B:", "Option B", a lone "b", or a bare
                 capital B..Z; a bare A or I (English words: "A meniscus tear") only when
                 alone or before ",", ";", "/", "and", "or" ("A and B" names two). Option texts are blanked before letters are sought, so an option
                 such as "Grade C" cannot add a letter. Two different letters, or a letter
                 past the last option -> failure. "(C) Meniscus Tear": the letter decides. With
                 no letter, exactly one option text inside a sentence is the answer ("So the
                 sequence is Turn Left, Turn Right."; options that are letters: "D. D.").
multi_choice     "none" / "none of the above" / "[]" -> []; else items separated by "," ";"
                 "&", "and" or newlines, each an option text, a marked letter "(A) text",
                 or letters separated by spaces ("A C"). Glued letters ("AC") are rejected:
                 they cannot be told from a word. Result: sorted unique indices.
number           digits (-3, 12.5, 1,234; units ignored) or words zero..twenty, thirty..
                 ninety, "twenty-one": the last number in scope; in whole, the only number.
                 A "." makes a float, otherwise an int. Markup (``<points x1=...>``) is not
                 read; "none" / "there are no ..." is 0.
frames           ints and inclusive ranges "3-5", "3 to 5", "3 through 5": "[3, 4, 5]",
                 "frames 3-5, 9", "frame 7"; "none" -> []. Sorted unique ints. A count
                 given as context ("(of 24 frames shown)") is not a frame.
boxes            in the answer text: the profile's own syntax (``<|box_start|>``, ``<loc..>``,
                 ``<box>[[..]]</box>``, ...); JSON {"bbox_2d"|"bbox"|"box"|"box_2d": [...],
                 "frame": k} and lists of them; bare lists of the profile's numbers;
                 ``<bbx>[x, y, w, h]</bbx>`` (SGMRI-VQA; x-first profiles). Another
                 family's syntax fails. Point profiles give {"frame", "point": [x, y]}. A
                 box without its own "frame" takes the last "Frame k" written before it,
                 else the only image's frame (items showing one image), else fails. The
                 structured ``bboxes`` are read only when the answer field holds no box.
                 "none" -> [].
box3d            JSON {"frame_start", "frame_end", "bbox"|"bbox_2d"|"box"}, "frames a-b,
                 <box>", or six numbers in the profile's 3D layout (3DReasonKnee's
                 [start, end, x_min, x_max, y_min, y_max]; M3D's fractions for ``m3d``).
text             the answer, stripped; fails only when empty.
grade            "grade k" (the last one), else a number read as for ``number``; or
                 3DReasonKnee's ``{"MOAKS_scores": {"<region> <group>": {"<component>": k}}}``
                 (the item's entry; beside a structured answer both must agree); it must be
                 an int in the item's ``answer.scale`` (when the scale is not empty).
===============  ==========================================================================

Boxes: every box's numbers, in whatever syntax, are in the profile's space
(``voxqa.boxes.spaces``) on the rendered image of the box's
frame (``item.images``; a frame the item did not show is sized like its first image, as the
export does; without images, ``frame_size``). ``<bbx>`` values are x, y, width, height in
that space's units. The result is canonical pixels of the rendered image, ``{"frame":
k, "box": [x0, y0, x1, y1]}`` in the order written, neither clipped nor reordered: an
invalid box stays visibly invalid for the metric to judge. Boxes on frames the item did not
show are kept (they simply match nothing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from voxqa.boxes.profiles import Profile, get_profile
from voxqa.boxes.spaces import decode_point
from voxqa.errors import VoxqaError
from voxqa.schema import Item

Number = int | float


@dataclass(frozen=True)
class ParseResult:
    """A reply read as the item's answer type: ``value`` when ``ok``, else ``error`` says why."""

    ok: bool
    value: Any = None
    error: str | None = None


class ParseError(VoxqaError, ValueError):
    """Why a reply holds no answer of the expected type (becomes ``ParseResult.error``)."""


# --- reducing a reply to its answer -----------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THOUGHT_BLOCK = re.compile(r"<unused94>.*?(?:<unused95>|$)", re.DOTALL)  # MedGemma's thinking
_FENCE = re.compile(r"```[\w+-]*")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_PHRASE = re.compile(r"\b(?:final\s+answer|answer)\**\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_JSON_START = re.compile(r"[{\[]")
_MARKDOWN = re.compile(r"[*`]")
_ANSWER_KEY = re.compile(r'"answer"\s*:\s*')


def clean_reply(raw: str) -> str:
    """``raw`` without chain-of-thought, code fences and ``\\boxed{}``, stripped."""
    text = _THINK_BLOCK.sub("", _THOUGHT_BLOCK.sub("", raw))
    closing = text.lower().rfind("</think>")
    if closing >= 0:  # the <think> was part of the prompt (chat templates that open it)
        text = text[closing + len("</think>"):]
    opening = text.lower().find("<think>")
    if opening >= 0:  # a chain of thought cut off before it ended holds no answer
        text = text[:opening]
    return _BOXED.sub(r"\1", _FENCE.sub("", text)).strip()


def json_values(text: str) -> Iterator[tuple[int, Any]]:
    """Every top-level JSON object or array embedded in ``text``, with its start offset."""
    decoder = json.JSONDecoder()
    pos = 0
    while (m := _JSON_START.search(text, pos)) is not None:
        try:
            value, end = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            pos = m.start() + 1
            continue
        yield m.start(), value
        pos = end


@dataclass(frozen=True)
class Reply:
    """A cleaned reply and where its answer is.

    ``answer`` is the structured answer field (JSON text unless it was a string), else the
    text after the last answer phrase, else the whole text; ``explicit`` says it was one of
    the first two; ``bboxes`` are the structured target's boxes, if any.
    """

    text: str
    answer: str
    explicit: bool
    bboxes: Any = None

    def scope(self) -> str:
        """Where a short answer is read: the first non-empty line of an explicit answer, else
        the whole reply; markdown emphasis removed."""
        if not self.explicit:
            return _MARKDOWN.sub("", self.text).strip()
        line = next((ln for ln in self.answer.splitlines() if ln.strip()), "")
        return _MARKDOWN.sub("", line).strip()


def _structured(text: str) -> tuple[Any, Any] | None:
    """(answer, bboxes) of the last JSON object with an "answer" key; else of a structured
    reply cut off after its answer (a long ``bboxes`` list hitting the token limit)."""
    objects = [v for _, v in json_values(text) if isinstance(v, dict) and "answer" in v]
    if objects:
        return objects[-1]["answer"], objects[-1].get("bboxes")
    for key in reversed(list(_ANSWER_KEY.finditer(text))):
        try:
            return json.JSONDecoder().raw_decode(text, key.end())[0], None
        except json.JSONDecodeError:
            continue
    return None


def read_reply(raw: str) -> Reply:
    """``raw`` reduced to its answer (see the module docstring)."""
    text = clean_reply(raw)
    structured = _structured(text)
    if structured is not None:
        answer, bboxes = structured
        return Reply(text, answer if isinstance(answer, str) else json.dumps(answer), True, bboxes)
    phrases = list(_PHRASE.finditer(text))
    if phrases:
        return Reply(text, text[phrases[-1].end():].strip(), True)
    return Reply(text, text, False)


# --- per-item facts the parsers need ----------------------------------------------------------


@dataclass(frozen=True)
class ParseContext:
    """The item, its box profile, the study frame size (no images) and, for 3D boxes in a
    model's volume grid, the function that maps them back to the stored frames."""

    item: Item
    profile: Profile
    frame_size: tuple[int, int] | None = None
    volume_box: Callable[[list[Number]], dict[str, Any]] | None = None

    def options(self) -> list[str]:
        if not self.item.options:
            raise ParseError(f"item {self.item.id} has no options")
        return self.item.options

    def size(self, frame: int) -> tuple[int, int]:
        """(width, height) of the rendered image boxes on ``frame`` are written on."""
        images = self.item.images or []
        for im in images:
            if im.frame == frame:
                return im.width, im.height
        if images:  # an unshown frame: the export sizes it like the item's first image
            return images[0].width, images[0].height
        if self.frame_size is not None:
            return self.frame_size
        raise ParseError("the item has no images and no frame_size was given: cannot size boxes")

    def only_frame(self) -> int | None:
        """The frame of the item's one image, None unless it shows exactly one."""
        images = self.item.images or []
        return images[0].frame if len(images) == 1 else None


# --- yes / no ---------------------------------------------------------------------------------

_YES_NO = {"yes": "yes", "y": "yes", "true": "yes", "no": "no", "n": "no", "false": "no"}
_WORD = re.compile(r"[a-z]+(?:/[a-z]+)*")  # "n/a" and "yes/no" stay one (undecided) token


def parse_yes_no(reply: Reply, ctx: ParseContext) -> str:
    """The first decisive word: hedges ("not sure") contain none, so they fail."""
    words = _WORD.findall(reply.scope().lower())
    if not reply.explicit:
        words = words[:1]  # without an answer phrase only a leading "Yes"/"No" is an answer
    for word in words:
        if word in _YES_NO:
            return _YES_NO[word]
    raise ParseError("no yes/no answer found")


# --- options ----------------------------------------------------------------------------------

_LETTER_MARK = re.compile(
    r"(?<!\w)\(([A-Za-z])\)"  # (B); not the "(s)" of "lesion(s)"
    r"|\b(?i:option)\s+([A-Za-z])\b"  # Option B
    r"|(?<![\w(-])([A-Z])[.):](?=\s|$)"  # B.  B)  B:
    r"|(?<![\w-])([B-HJ-Z])(?![\w-])"  # a bare capital ...
    r"|(?<![\w-])([AI])(?=\s*(?:$|[,;/]|\b(?:and|or)\b))"  # ... but A and I are words too
)
_LONE_LETTER = re.compile(r"\W*(?:option\s+)?([A-Za-z])\W*", re.IGNORECASE)
_LETTER_TOKEN = re.compile(r"\(?([A-Za-z])[.):]?")
_OPTION_WORD = re.compile(r"\boption\b", re.IGNORECASE)
_ITEM_SEPARATOR = re.compile(r"[,;&\n]|\band\b", re.IGNORECASE)
_NONE = {"none", "none of the above", "none of them", "[]"}
_PLACEHOLDER = "\x00{}\x00"
_PLACEHOLDER_RE = re.compile(r"\x00(\d+)\x00")


def _normal(text: str) -> str:
    """Case-, whitespace- and edge-punctuation-insensitive form, for exact text matches."""
    return " ".join(text.split()).strip(" .,;:!?\"'").casefold()


def _letter_index(letter: str, options: list[str]) -> int:
    index = ord(letter.upper()) - ord("A")
    if index >= len(options):
        raise ParseError(f"letter {letter.upper()} is past the last of {len(options)} options")
    return index


def _option_by_text(text: str, options: list[str]) -> int | None:
    """The option whose whole text ``text`` is, if exactly one."""
    hits = [i for i, o in enumerate(options) if _normal(o) == _normal(text)]
    return hits[0] if len(hits) == 1 else None


def _mark_options(text: str, options: list[str]) -> str:
    """``text`` with every option text replaced by a letter-free placeholder (longest first),
    so letters inside option texts ("Grade C", "vertebrae_L1") are never read as answers."""
    for i in sorted(range(len(options)), key=lambda i: -len(options[i])):
        pattern = r"(?<!\w)" + re.escape(options[i].strip()) + r"(?!\w)"
        text = re.sub(pattern, _PLACEHOLDER.format(i), text, flags=re.IGNORECASE)
    return text


def _letters(text: str) -> set[str]:
    """Upper-case option letters named in ``text`` (option texts already replaced)."""
    lone = _LONE_LETTER.fullmatch(_PLACEHOLDER_RE.sub(" ", text))
    if lone:
        return {lone[1].upper()}
    return {next(g for g in m.groups() if g).upper() for m in _LETTER_MARK.finditer(text)}


def parse_choice(reply: Reply, ctx: ParseContext) -> int:
    """An option's whole text, else exactly one letter; a second letter is a second answer."""
    options = ctx.options()
    scope = reply.scope()
    by_text = _option_by_text(scope, options)
    if by_text is not None:
        return by_text
    marked = _mark_options(scope, options)
    letters = _letters(marked)
    if not letters:  # one option's text inside a sentence ("So the sequence is Turn Left, Turn Right.")
        named = set(_PLACEHOLDER_RE.findall(marked))
        if len(named) == 1:
            return int(named.pop())
        raise ParseError("no option letter, or not exactly one option text, found"
                         if named else "no option letter or option text found")
    if len(letters) > 1:
        raise ParseError(f"several options named: {', '.join(sorted(letters))}")
    return _letter_index(letters.pop(), options)


def _item_indices(piece: str, options: list[str]) -> list[int]:
    """The options one list item names: "(A) text", an option text, or letters "A C"."""
    marked = _PLACEHOLDER_RE.sub(" ", piece).strip()
    if marked:
        tokens = _OPTION_WORD.sub(" ", marked).split()
        matches = [_LETTER_TOKEN.fullmatch(t) for t in tokens]
        if not all(matches):
            raise ParseError(f"{marked!r} is neither option letters nor an option text")
        return [_letter_index(m[1], options) for m in matches if m]
    return [int(i) for i in _PLACEHOLDER_RE.findall(piece)]


def parse_multi_choice(reply: Reply, ctx: ParseContext) -> list[int]:
    """Sorted unique indices of a separated list; one unreadable list item fails it all."""
    options = ctx.options()
    scope = reply.scope()
    if _normal(scope) in _NONE:
        return []
    indices: set[int] = set()
    for piece in _ITEM_SEPARATOR.split(_mark_options(scope, options)):
        piece = piece.strip(" .:")
        if piece:
            indices.update(_item_indices(piece, options))
    if not indices:
        raise ParseError("no option letters or option texts found")
    return sorted(indices)


# --- numbers ----------------------------------------------------------------------------------

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
          "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
          "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_VALUE = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<digits>-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?)"
    rf"|\b(?P<tens>{'|'.join(_TENS)})(?:[\s-]+(?P<unit>{'|'.join(_UNITS[1:10])}))?\b"
    rf"|\b(?P<word>{'|'.join(_UNITS)})\b",
    re.IGNORECASE,
)


def _numbers(text: str) -> list[Number]:
    """Every number in ``text``, in order: digits (ints unless they have a point) and words."""
    found: list[Number] = []
    for m in _NUMBER.finditer(text):
        if m["digits"]:
            digits = m["digits"].replace(",", "")
            found.append(float(digits) if "." in digits else int(digits))
        elif m["tens"]:
            found.append(_WORD_VALUE[m["tens"].lower()] + (_WORD_VALUE[m["unit"].lower()] if m["unit"] else 0))
        else:
            found.append(_WORD_VALUE[m["word"].lower()])
    return found


_MARKUP = re.compile(r"<[^<>]*>")  # point lists and box tags carry coordinates, not counts
_NONE_COUNT = re.compile(r"\bnone\b|\bthere\s+(?:are|is)\s+no\b", re.IGNORECASE)


def _the_number(reply: Reply) -> Number:
    """The last number of an explicit answer, else the reply's only number; markup (a
    ``<points x1=...>`` list) is not read, and "none" / "there are no ..." is 0."""
    scope = _MARKUP.sub(" ", reply.scope())
    found = _numbers(scope)
    if not found and _NONE_COUNT.search(scope):
        return 0
    if not found:
        raise ParseError("no number found")
    if reply.explicit:
        return found[-1]
    if len(set(found)) > 1:
        raise ParseError(f"several numbers and no answer phrase: {sorted(set(found))}")
    return found[0]


def parse_number(reply: Reply, ctx: ParseContext) -> Number:
    """The answer's last number, or a phrase-less reply's only one (units are ignored)."""
    return _the_number(reply)


_GRADE = re.compile(r"\bgrade\s*:?\s*(\d+)\b", re.IGNORECASE)


MOAKS_KEYS = ("MOAKS_scores", "MOAKS_grade")  # 3DReasonKnee's Q45/Q51 write "MOAKS_grade"


def _norm_key(key: str) -> str:
    return " ".join(re.findall(r"[a-z0-9%]+", key.lower()))


def _moaks_entry(scores: dict[str, Any], item: Item) -> Any:
    """The item's grade in a ``MOAKS_scores`` object: its ``"<region> <group>"`` entry (or the
    only entry: 3DReasonKnee asks one region per question), then its component (or
    ``"grade"``, or the only value; Q46/47 nest ``{"grade": g}``, Q44/45 do not)."""
    from voxqa.sources.knee import FEATURES, moaks_key

    group, component = moaks_key(item.label or "", item.subtask) if item.subtask in FEATURES else ("", None)
    entries = {_norm_key(k): v for k, v in scores.items()}
    entry = entries.get(_norm_key(group), next(iter(entries.values())) if len(entries) == 1 else None)
    if isinstance(entry, dict):
        values = {_norm_key(k): v for k, v in entry.items()}
        for key in (component, "grade"):
            if key is not None and _norm_key(key) in values:
                return values[_norm_key(key)]
        return next(iter(values.values())) if len(values) == 1 else None
    return entry


def _moaks_grade(text: str, item: Item) -> Any:
    """The grade a 3DReasonKnee-style ``{"MOAKS_scores": {...}}`` reply gives the item, or None."""
    for _, value in json_values(text):
        scores = next((value[k] for k in MOAKS_KEYS if k in value), None) if isinstance(value, dict) else None
        if isinstance(scores, dict) and (found := _moaks_entry(scores, item)) is not None:
            return found
    return None


def parse_grade(reply: Reply, ctx: ParseContext) -> int:
    """"grade k", else the number, or the item's entry of a 3DReasonKnee ``MOAKS_scores``
    object (beside a structured answer, the two must agree); off the item's scale is a
    failure, not a clipped grade."""
    moaks = _moaks_grade(reply.text, ctx.item)
    if moaks is not None and not reply.explicit:
        value = moaks
    else:
        named = _GRADE.findall(reply.scope())
        value = int(named[-1]) if named else _the_number(reply)
        if moaks is not None and moaks != value:
            raise ParseError(f"the answer {value} and the MOAKS_scores grade {moaks} differ")
    if not isinstance(value, int):
        raise ParseError(f"grade {value} is not an integer")
    scale = getattr(ctx.item.answer, "scale", [])
    if scale and value not in scale:
        raise ParseError(f"grade {value} is not on the scale {scale}")
    return value


# --- frames -----------------------------------------------------------------------------------

_FRAME_RANGE = re.compile(r"(\d+)\s*(?:-|–|—|\bto\b|\bthrough\b)\s*(\d+)", re.IGNORECASE)
_INT = re.compile(r"\b\d+\b")
_DECIMAL = re.compile(r"\d\.\d")
MAX_RANGE = 10_000  # frames in one range; more is a misread, not a volume


def _range(first: int, last: int) -> range:
    if last < first or last - first >= MAX_RANGE:
        raise ParseError(f"frame range {first}-{last} is empty or implausibly long")
    return range(first, last + 1)


_CONTEXT_COUNT = re.compile(r"\([^()]*\b(?:of|out of|total)\b[^()]*\)|\b(?:out\s+)?of\s+\d+\s+(?:frames|slices|images)\b",
                            re.IGNORECASE)


def parse_frames(reply: Reply, ctx: ParseContext) -> list[int]:
    """Sorted unique frames of ints and inclusive ranges; a decimal is no frame index, and a
    count given as context ("(of 24 frames shown)", "of 24 slices") is not a frame."""
    scope = _CONTEXT_COUNT.sub(" ", reply.scope())
    if _normal(scope) in _NONE:
        return []
    if _DECIMAL.search(scope):
        raise ParseError("frame numbers are integers")
    frames: set[int] = set()
    for m in _FRAME_RANGE.finditer(scope):
        frames.update(_range(int(m[1]), int(m[2])))
    frames.update(int(v) for v in _INT.findall(_FRAME_RANGE.sub(" ", scope)))
    if not frames:
        raise ParseError("no frame numbers found")
    return sorted(frames)


# --- boxes ------------------------------------------------------------------------------------

_NUM = r"(-?\d+(?:\.\d+)?)"
_BBX = re.compile(rf"<bbx>\s*\[\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*\]\s*</bbx>", re.IGNORECASE)
_FRAME_MENTION = re.compile(r"\bframe\b\s*[#:]?\s*(\d+)", re.IGNORECASE)
_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d")


@dataclass(frozen=True)
class _Written:
    """A box as the model wrote it: numbers in the profile's space, at offset ``pos``."""

    pos: int
    values: list[Any]
    frame: Any = None  # the frame written with the box itself (a JSON "frame"), if any


def _num(text: str) -> Number:
    return float(text) if "." in text else int(text)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _json_boxes(pos: int, value: Any, arity: int, frame: Any = None) -> list[_Written]:
    """Boxes inside one JSON value: dicts with a box key (and maybe "frame"), lists of ``arity`` numbers."""
    if isinstance(value, dict):
        frame = value.get("frame", frame)
        key = next((k for k in _BOX_KEYS if k in value), None)
        if key is not None:
            return [_Written(pos, value[key], frame)]
        return [b for v in value.values() for b in _json_boxes(pos, v, arity, frame)]
    if isinstance(value, list):
        if len(value) == arity and all(_is_number(v) for v in value):
            return [_Written(pos, value, frame)]
        return [b for v in value for b in _json_boxes(pos, v, arity, frame)]
    return []


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    for a, b in spans:
        text = text[:a] + " " * (b - a) + text[b:]
    return text


def _written_boxes(text: str, profile: Profile) -> list[_Written]:
    """Every box in ``text`` in the profile's own syntax, in its JSON form, or as SGMRI-VQA's
    ``<bbx>[x, y, w, h]</bbx>`` (xy profiles), in text order. Another family's syntax is
    refused; written forms are blanked before JSON is sought so no box is read twice."""
    family = profile.foreign(text)
    if family is not None:
        raise ParseError(f"the reply writes boxes the way {family} does, but the profile is {profile.name}")
    found = [_Written(f.pos, f.values) for f in profile.find(text)]
    spans = [(f.pos, f.end) for f in profile.find(text)]
    if profile.space.arity == 4 and getattr(profile.space, "order", "xy") == "xy":
        for m in _BBX.finditer(text):
            x, y, w, h = (_num(g) for g in m.groups())
            found.append(_Written(m.start(), [x, y, x + w, y + h]))
            spans.append(m.span())
    arity = 2 if profile.answer_form == "points" else profile.space.arity
    for pos, value in json_values(_blank(text, spans)):
        found += _json_boxes(pos, value, arity)
    return sorted(found, key=lambda b: b.pos)


def _frame_of(box: _Written, text: str, ctx: ParseContext) -> int:
    """The box's own frame, else the last "Frame k" before it, else the only image's frame."""
    frame = box.frame
    if frame is None:
        mentions = list(_FRAME_MENTION.finditer(text, 0, box.pos))
        frame = int(mentions[-1][1]) if mentions else ctx.only_frame()
    if frame is None:
        raise ParseError(f"box {box.values} has no frame and the item shows several images")
    if not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
        raise ParseError(f"frame {frame!r} is not a frame index")
    return frame


def _pixels(values: Any, frame: int, ctx: ParseContext) -> list[int]:
    """Canonical pixels of a box written in the profile's space on ``frame``'s image."""
    if not isinstance(values, list):
        raise ParseError(f"box {values!r} is not a list of numbers")
    try:
        return list(ctx.profile.decode(values, *ctx.size(frame)))
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def _point(values: Any, frame: int, ctx: ParseContext) -> list[float]:
    """Pixel position of a point written in percent of ``frame``'s image."""
    try:
        return [round(v, 2) for v in decode_point(values, *ctx.size(frame))]
    except (TypeError, ValueError) as exc:
        raise ParseError(f"point {values!r}: {exc}") from None


def parse_boxes(reply: Reply, ctx: ParseContext) -> list[dict[str, Any]]:
    """Every box of the answer with its frame, in pixels (points for point profiles); the
    structured ``bboxes`` (the evidence) stand in only when the answer field names no box."""
    if _normal(reply.scope()) in _NONE:
        return []
    text = reply.answer
    written = _written_boxes(text, ctx.profile)
    if not written and reply.bboxes:
        arity = 2 if ctx.profile.answer_form == "points" else ctx.profile.space.arity
        text, written = "", _json_boxes(0, reply.bboxes, arity)
    if not written:
        raise ParseError("no box found")
    out = []
    for box in written:
        frame = _frame_of(box, text, ctx)
        if ctx.profile.answer_form == "points":
            out.append({"frame": frame, "point": _point(box.values, frame, ctx)})
        else:
            out.append({"frame": frame, "box": _pixels(box.values, frame, ctx)})
    return out


_FRAME_RANGE_WORDS = re.compile(r"\bframes?\s*(\d+)\s*(?:-|–|—|\bto\b|\bthrough\b)\s*(\d+)", re.IGNORECASE)


def _box3d_json(value: Any) -> dict[str, Any] | None:
    """The first {"frame_start", "frame_end", box} object inside a JSON value."""
    if isinstance(value, dict):
        key = next((k for k in _BOX_KEYS if k in value), None)
        if key is not None and "frame_start" in value and "frame_end" in value:
            return {"frame_start": value["frame_start"], "frame_end": value["frame_end"],
                    "box": value[key]}
        value = list(value.values())
    if isinstance(value, list):
        return next((f for v in value if (f := _box3d_json(v)) is not None), None)
    return None


def _six(text: str) -> list[Number] | None:
    """The first list of six numbers in ``text`` (a 3D box in the profile's layout)."""
    return next((v for _, v in json_values(text)
                 if isinstance(v, list) and len(v) == 6 and all(_is_number(x) for x in v)), None)


def _reasonknee(v: list[Number], ctx: ParseContext) -> dict[str, Any]:
    """3DReasonKnee's ``[start_frame, end_frame, x_min, x_max, y_min, y_max]``, x and y in the
    profile's 2D space (written in its axis order before decoding)."""
    f0, f1, x0, x1, y0, y1 = v
    xy = [x0, y0, x1, y1]
    if getattr(ctx.profile.space, "order", "xy") == "yx":
        xy = [y0, x0, y1, x1]
    return {"frame_start": f0, "frame_end": f1, "box": xy}


def parse_box3d(reply: Reply, ctx: ParseContext) -> dict[str, Any]:
    """Frames inclusive and a box in pixels, sized by the image of ``frame_start``: a JSON
    {"frame_start", "frame_end", "bbox"}, "frames a-b, <box>", or six numbers in the
    profile's 3D layout (3DReasonKnee's, or M3D-LaMed's with a recipe transform)."""
    text = reply.answer
    found = next((f for _, v in json_values(text) if (f := _box3d_json(v)) is not None), None)
    if found is None and (six := _six(text)) is not None:
        if ctx.profile.box3d == "m3d":
            if ctx.volume_box is None:
                raise ParseError("an M3D 3D box needs the study's `render --recipe m3d` transform")
            try:
                return ctx.volume_box(six)
            except ValueError as exc:
                raise ParseError(str(exc)) from None
        found = _reasonknee(six, ctx)
    if found is None:
        m = _FRAME_RANGE_WORDS.search(text)
        boxes = _written_boxes(text[m.end():], ctx.profile) if m else []
        if not boxes:
            raise ParseError('no "frames a-b, <box>", frame_start/frame_end/bbox or 6-number 3D box found')
        found = {"frame_start": int(m[1]), "frame_end": int(m[2]), "box": boxes[0].values}
    for key in ("frame_start", "frame_end"):
        if not isinstance(found[key], int) or isinstance(found[key], bool) or found[key] < 0:
            raise ParseError(f"{key} {found[key]!r} is not a frame index")
    found["box"] = _pixels(found["box"], found["frame_start"], ctx)
    return found


# --- text -------------------------------------------------------------------------------------


def parse_text(reply: Reply, ctx: ParseContext) -> str:
    """The answer as written; free text is judged by text metrics, so only emptiness fails."""
    text = reply.answer.strip()
    if not text:
        raise ParseError("empty answer")
    return text


# --- entry point ------------------------------------------------------------------------------

Parser = Callable[[Reply, ParseContext], Any]
PARSERS: dict[str, Parser] = {
    "yes_no": parse_yes_no,
    "choice": parse_choice,
    "multi_choice": parse_multi_choice,
    "number": parse_number,
    "frames": parse_frames,
    "boxes": parse_boxes,
    "box3d": parse_box3d,
    "text": parse_text,
    "grade": parse_grade,
}


def parse_answer(
    raw: str, item: Item, profile: str = "pixel", frame_size: tuple[int, int] | None = None,
    volume_box: Callable[[list[Number]], dict[str, Any]] | None = None,
) -> ParseResult:
    """``raw`` read as ``item``'s answer type; boxes in pixels of the rendered image.

    ``profile`` is the spec of the box profile the model was prompted with
    (``voxqa.boxes.profiles``); an unknown one raises, as it is a caller's mistake, not a
    model's. ``frame_size`` (width, height) sizes boxes of items that have no rendered
    images; ``volume_box`` maps a 3D box in a model's volume grid to stored frames (M3D).
    """
    ctx = ParseContext(item, get_profile(profile), frame_size, volume_box)
    try:
        return ParseResult(True, PARSERS[item.answer.type](read_reply(raw or ""), ctx))
    except ParseError as exc:
        return ParseResult(False, None, str(exc))
