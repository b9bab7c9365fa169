"""Offline claim extraction with the lexicon (``voxqa.radreports.lexicon``).

Why rules and not medspacy's ConText: medspacy 1.3.1 (the newest) pins spaCy < 3.8, whose
thinc < 8.3 is built against numpy < 2, while voxqa's stack (pandas 3, pylibjpeg) needs
numpy >= 2; installing it downgrades numpy and breaks those. The negation here is the
NegEx scheme ConText implements (triggers negate their clause; terminators end it), in
English and German, which medspacy's shipped rules do not cover anyway.

Per sentence: structure mentions (with the side words attached to them), then a relation
phrase between the first two mentions gives a binary claim; otherwise a side word gives a
side claim about the first mention, and else every mention is claimed present (absent when
negated or removed by a procedure). Plurals and "both" of paired structures become one
claim per side, paired left with left when both structures are plural.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from voxqa.radreports.claims import Claim, Language
from voxqa.radreports.lexicon import (
    ABBREVIATIONS, LESION, MIDLINE, NEGATION, PAIRED, PARTIAL, PROCEDURES, RELATIONS, SIDE_AFTER,
    SIDE_BEFORE, SIDE_FREE, STRUCTURES, TERMINATORS, compile_alternatives,
)

NAME = "rules"


@dataclass
class Mention:
    start: int
    end: int
    base: str
    plural: bool = False
    side: str | None = None  # "left", "right", "both"
    removed: bool = False  # named by a procedure that removes it ("nephrectomy")
    side_span: tuple[int, int] | None = None

    def labels(self) -> list[str]:
        """Label names: one per side for a plural or "both" of a paired structure."""
        if self.side in ("left", "right"):
            return [f"{self.base}_{self.side}"]
        if self.base in PAIRED and (self.side == "both" or self.plural):
            return [f"{self.base}_left", f"{self.base}_right"]
        return [self.base]


class RuleExtractor:
    """English and German rules; ``extract`` returns claims without verdicts."""

    name = NAME

    def __init__(self) -> None:
        self._structures = {lang: compile_alternatives(t) for lang, t in STRUCTURES.items()}
        self._procedures = {lang: compile_alternatives(t) for lang, t in PROCEDURES.items()}
        self._relations = {lang: compile_alternatives(t) for lang, t in RELATIONS.items()}
        self._free_sides = {lang: compile_alternatives(t) for lang, t in SIDE_FREE.items()}
        self._before = {lang: [(re.compile(rf"\b(?:{p})\s+$", re.I), v) for p, v in t.items()]
                        for lang, t in SIDE_BEFORE.items()}
        self._after = {lang: [(re.compile(rf"^\s+(?:{p})\b", re.I), v) for p, v in t.items()]
                       for lang, t in SIDE_AFTER.items()}
        self._negation = {lang: re.compile(rf"\b(?:{p})\b", re.I) for lang, p in NEGATION.items()}
        self._clauses = {lang: re.compile(rf";|,?\s+\b(?:{p})\b", re.I) for lang, p in TERMINATORS.items()}
        self._partial = {lang: re.compile(rf"\b(?:{p})\S*\s*$", re.I) for lang, p in PARTIAL.items()}

    def extract(self, study_id: str, text: str, language: Language) -> list[Claim]:
        claims = []
        for start, end in sentences(text):
            sentence = text[start:end]
            for c0, c1 in self._clause_spans(sentence, language):
                for labels, relation, side, negated in self._clause(sentence[c0:c1], language):
                    claims.append(Claim(
                        study_id=study_id, sentence=sentence, span=(start, end), language=language,
                        structures=labels, relation=relation, side=side,
                        polarity="negative" if negated else "positive", extractor=NAME))
        return claims

    def _clause_spans(self, sentence: str, language: str) -> list[tuple[int, int]]:
        cuts = [m.start() for m in self._clauses[language].finditer(sentence)]
        bounds = [0, *cuts, len(sentence)]
        return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    def _mentions(self, clause: str, language: str) -> list[Mention]:
        taken: list[tuple[int, int]] = []
        found: list[Mention] = []
        tables = [(p, base, False) for p, base in self._procedures[language]]
        tables += [(p, entry, True) for p, entry in self._structures[language]]
        for pattern, value, is_structure in tables:
            for m in pattern.finditer(clause):
                if any(m.start() < b and a < m.end() for a, b in taken):
                    continue
                if not is_structure and self._partial[language].search(clause[:m.start()]):
                    continue  # a partial resection leaves the organ
                taken.append(m.span())
                found.append(Mention(m.start(), m.end(), value.base if is_structure else value,
                                     plural=is_structure and value.plural, removed=not is_structure))
        found.sort(key=lambda x: x.start)
        for men in found:
            for pattern, side in self._before[language]:
                if s := pattern.search(clause[:men.start]):
                    men.side, men.side_span = side, s.span()
                    break
            else:
                for pattern, side in self._after[language]:
                    if s := pattern.search(clause[men.end:]):
                        men.side, men.side_span = side, (men.end + s.start(), men.end + s.end())
                        break
        return found

    def _clause(self, clause: str, language: str) -> Iterator[tuple[list[str], str, str | None, bool]]:
        """(structures, relation, side, negated) per claim of one clause."""
        mentions = self._mentions(clause, language)
        if not mentions:
            return
        negated = bool(self._negation[language].search(clause))
        organs = [m for m in mentions if m.base not in (MIDLINE, LESION)]
        first = mentions[0]
        if len(mentions) >= 2:
            a, b = mentions[0], mentions[1]
            relation = self._relation(clause[a.end:b.start], language)
            if b.base == LESION and a.base != LESION and not clause[a.end:b.start].strip():
                yield from ((["lesion", o], "within", None, negated) for o in a.labels())  # "renal cyst"
                return
            if relation in ("left_of", "right_of") and b.base == MIDLINE:
                yield from (([lab], "side", relation.removesuffix("_of"), negated) for lab in a.labels())
                return
            if relation is not None and MIDLINE not in (a.base, b.base):
                if relation == "smaller":
                    a, b, relation = b, a, "larger"
                yield from ((pair, relation, None, negated) for pair in _pairs(a.labels(), b.labels()))
                return
        if first.base in (MIDLINE, LESION):
            return
        side = self._free_side(clause, mentions, language)
        if side is not None and not first.removed:
            yield from (([lab], "side", side, negated) for lab in first.labels())
            return
        for men in organs:
            yield from (([lab], "present", None, negated or men.removed) for lab in men.labels())

    def _relation(self, between: str, language: str) -> str | None:
        """The relation phrase between two mentions; "in"/"within" only when nothing else is."""
        found = [value for pattern, value in self._relations[language] if pattern.search(between)]
        specific = [v for v in found if v != "within"]
        return specific[0] if specific else (found[0] if found else None)

    def _free_side(self, clause: str, mentions: list[Mention], language: str) -> str | None:
        used = [m.side_span for m in mentions if m.side_span]
        for pattern, side in self._free_sides[language]:
            for m in pattern.finditer(clause):
                if not any(a <= m.start() < b for a, b in used):
                    return side
        return None


def _pairs(left: list[str], right: list[str]) -> list[list[str]]:
    """Subject x object label pairs; two bilateral mentions pair side with side."""
    if len(left) == 2 and len(right) == 2:
        return [[left[0], right[0]], [left[1], right[1]]]
    return [[a, b] for a in left for b in right]


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans: a period, ! or ? followed by white space or the end, except after
    an abbreviation ("Z.n.", "e.g."). Spans are stripped of surrounding white space."""
    spans, start = [], 0
    for m in re.finditer(r"[.!?]+(?=\s|$)", text):
        before = text[start:m.end()].lower()
        if any(before.endswith(a) and (len(before) == len(a) or not before[-len(a) - 1].isalpha())
               for a in ABBREVIATIONS):
            continue
        spans.append((start, m.end()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    out = []
    for a, b in spans:
        chunk = text[a:b]
        lead = len(chunk) - len(chunk.lstrip())
        out.append((a + lead, a + len(chunk.rstrip())))
    return [s for s in out if s[1] > s[0]]

