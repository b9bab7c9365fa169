"""Offline claim extraction with the lexicon (``voxqa.radreports.lexicon``).

Why rules and not medspacy's ConText: medspacy 1.3.1 (the newest) pins spaCy < 3.8, whose
thinc < 8.3 is built against numpy < 2, while voxqa's stack (pandas 3, pylibjpeg) needs
numpy >= 2; installing it downgrades numpy and breaks those. The negation here is the
NegEx scheme ConText implements (triggers negate their clause; terminators end it), in
English and German, which medspacy's shipped rules do not cover anyway.

Per sentence: structure mentions (the longest of overlapping words, with the side words
attached to paired structures), then a relation phrase between the first two mentions gives
a binary claim; otherwise a side word gives a side claim about the first mention (of a paired
structure with no side of its own: that side of it), and else every mention is claimed
present (absent where a negation is about its presence, or removed by a procedure). Plurals
and "both" of paired structures become one claim per side, paired left with left when both
structures are plural. A sentence that yields no claim has a reason (``NO_CLAIM``), which
``no_claim_reason`` gives and the build report counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from voxqa.radreports.claims import Claim, Language
from voxqa.radreports.lexicon import (
    ABBREVIATIONS, DE_COMPOUNDS, DE_WORDS, LESION, MIDLINE, NEGATION, NEGATION_FILLER, ONE_SIDED, ORDINAL_NOUNS,
    PAIRED, PARTIAL, PRESENCE, PROCEDURES, RELATIONS, RIB, SIDE_AFTER, SIDE_BEFORE, SIDE_FREE, STRUCTURES,
    TERMINATORS, Entry, alternatives, compile_alternatives, label_of, side_word,
)

NAME = "rules"
#: Why a sentence yields no claim, most specific first (a sentence gets the first that applies).
NO_CLAIM = {
    "side_not_in_label_vocabulary": "a structure on a side the label vocabulary does not have ('left middle lobe')",
    "partial_resection": "a partial resection, which leaves the organ ('partial nephrectomy')",
    "lesion_or_midline_only": "lesions or the midline, with no relation to a structure ('no suspicious mass')",
    "no_structure_word": "no structure or procedure word of the lexicon",
}


@dataclass
class Mention:
    start: int
    end: int
    base: str
    plural: bool = False
    side: str | None = None  # "left", "right", "both"
    removed: bool = False  # named by a procedure that removes it ("nephrectomy")
    side_span: tuple[int, int] | None = None
    level: int | None = None  # a rib's number
    after: int = -1  # where side words after it are looked for (the end of a compound word)

    def sideable(self) -> bool:
        return self.base in PAIRED or self.base in ONE_SIDED

    def labels(self) -> list[str]:
        """Label names: one per side for a plural or "both" of a paired structure; none for a
        side the label vocabulary does not have ("left middle lobe")."""
        entry = Entry(self.base, level=self.level)
        only = ONE_SIDED.get(self.base)
        if only:
            return [] if self.side in ("left", "right") and self.side != only else [label_of(entry, only)]
        if self.side in ("left", "right"):
            return [label_of(entry, self.side)]
        if self.base in PAIRED and (self.side == "both" or self.plural):
            return [label_of(entry, "left"), label_of(entry, "right")]
        return [label_of(entry, None)]


class RuleExtractor:
    """English and German rules; ``extract`` returns claims without verdicts."""

    name = NAME

    def __init__(self) -> None:
        self._structures = {lang: compile_alternatives({a: e for p, e in t.items() for a in alternatives(p)})
                            for lang, t in STRUCTURES.items()}
        self._procedures = {lang: compile_alternatives({a: e for p, e in t.items() for a in alternatives(p)})
                            for lang, t in PROCEDURES.items()}
        self._relations = {lang: compile_alternatives(t) for lang, t in RELATIONS.items()}
        self._free_sides = {lang: compile_alternatives(t) for lang, t in SIDE_FREE.items()}
        self._before = {lang: [(re.compile(rf"\b(?:{p})\s+$", re.I), v) for p, v in t.items()]
                        for lang, t in SIDE_BEFORE.items()}
        self._after = {lang: [(re.compile(rf"^\s+(?:{p})\b", re.I), v) for p, v in t.items()]
                       for lang, t in SIDE_AFTER.items()}
        self._negation = {lang: re.compile(rf"\b(?:{p})\b", re.I) for lang, p in NEGATION.items()}
        self._filler = {lang: re.compile(rf"(?:\s+|\b(?:{p})\b)*", re.I) for lang, p in NEGATION_FILLER.items()}
        self._presence = {lang: re.compile(rf"(?:{p})\b", re.I) for lang, p in PRESENCE.items()}
        self._clauses = {lang: re.compile(rf";|,?\s+\b(?:{p})\b", re.I) for lang, p in TERMINATORS.items()}
        self._partial = {lang: re.compile(rf"\b(?:{p})\S*\s*$", re.I) for lang, p in PARTIAL.items()}
        stems = "|".join(sorted(DE_COMPOUNDS, key=len, reverse=True))
        self._compound = re.compile(rf"\b({stems})([a-zäöüß]{{3,}})\b", re.I)
        self._lesion_de = re.compile(rf"(?:{DE_WORDS[LESION][2]})", re.I)

    def extract(self, study_id: str, text: str, language: Language) -> list[Claim]:
        claims = []
        for start, end in sentences(text):
            sentence = text[start:end]
            for labels, relation, side, negated in self._sentence(sentence, language)[0]:
                claims.append(Claim(
                    study_id=study_id, sentence=sentence, span=(start, end), language=language,
                    structures=labels, relation=relation, side=side,
                    polarity="negative" if negated else "positive", extractor=NAME))
        return claims

    def no_claim_reason(self, sentence: str, language: Language) -> str | None:
        """Why ``sentence`` yields no claim (a ``NO_CLAIM`` key), None when it yields some."""
        claims, reasons = self._sentence(sentence, language)
        if claims:
            return None
        return next((r for r in NO_CLAIM if r in reasons), "no_structure_word")

    def mentions(self, sentence: str, language: str) -> list[Mention]:
        """The structure words of ``sentence``, with their sides, at their places in it."""
        out = []
        for c0, c1 in self._clause_spans(sentence, language):
            for men in self._mentions(sentence[c0:c1], language, set()):
                men.start, men.end = men.start + c0, men.end + c0
                men.after = men.after + c0 if men.after >= 0 else -1
                men.side_span = None if men.side_span is None else (men.side_span[0] + c0, men.side_span[1] + c0)
                out.append(men)
        return out

    def _sentence(self, sentence: str, language: str) -> tuple[list, set[str]]:
        claims: list = []
        reasons: set[str] = set()
        for c0, c1 in self._clause_spans(sentence, language):
            claims += list(self._clause(sentence[c0:c1], language, reasons))
        return claims, reasons

    def _clause_spans(self, sentence: str, language: str) -> list[tuple[int, int]]:
        cuts = [m.start() for m in self._clauses[language].finditer(sentence)]
        bounds = [0, *cuts, len(sentence)]
        return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    def _candidates(self, clause: str, language: str, reasons: set[str]) -> list[tuple[int, int, int, list[Mention]]]:
        """Every word match as (start, end, priority, mentions): procedures and table words
        before German compounds of the same length."""
        out = []
        for pattern, organ in self._procedures[language]:
            for m in pattern.finditer(clause):
                if self._partial[language].search(clause[:m.start()]):
                    reasons.add("partial_resection")  # a partial resection leaves the organ
                    continue
                out.append((m.start(), m.end(), 0, [Mention(m.start(), m.end(), organ, removed=True)]))
        for pattern, entry in self._structures[language]:
            for m in pattern.finditer(clause):
                men = Mention(m.start(), m.end(), entry.base, plural=entry.plural, side=entry.side, level=entry.level)
                if "side" in pattern.groupindex and m["side"]:
                    men.side, men.side_span = side_word(m["side"]), m.span("side")
                out.append((m.start(), m.end(), 0, [men]))
        if language == "de":
            for m in self._compound.finditer(clause):
                base = DE_COMPOUNDS[m[1].lower()]
                if self._lesion_de.fullmatch(m[2]):  # "Nierenzyste": the kidney, and a lesion in it
                    parts = [Mention(m.start(), m.end(1), base, after=m.end()), Mention(m.start(2), m.end(), LESION)]
                else:
                    parts = [Mention(m.start(), m.end(), base)]
                out.append((m.start(), m.end(), 1, parts))
        return out

    def _mentions(self, clause: str, language: str, reasons: set[str]) -> list[Mention]:
        taken: list[tuple[int, int]] = []
        found: list[Mention] = []
        for start, end, _, mentions in sorted(self._candidates(clause, language, reasons),
                                              key=lambda c: (c[0] - c[1], c[2], c[0])):
            if any(start < b and a < end for a, b in taken):
                continue
            taken.append((start, end))
            found += mentions
        found.sort(key=lambda x: x.start)
        for i, men in enumerate(found):
            if men.side is not None or not men.sideable():
                continue
            nxt = found[i + 1] if i + 1 < len(found) else None
            after = men.after if men.after >= 0 else men.end
            if nxt is not None and nxt.base == LESION and not clause[after:nxt.start].strip():
                after = nxt.end  # "renal cyst on the left": the side is the kidney's
            self._attach_side(men, clause, after, language)
        for _ in found:  # "5. bis 7. Rippe rechts", "left 9th and 10th ribs": the list shares the side
            for a, b in [*zip(found, found[1:], strict=False), *zip(found[1:], found, strict=False)]:
                if a.base == b.base == RIB and a.side is None and b.side and _COORDINATED.fullmatch(
                        clause[min(a.end, b.end):max(a.start, b.start)]):
                    a.side = b.side
        return found

    def _attach_side(self, men: Mention, clause: str, after: int, language: str) -> None:
        for pattern, side in self._before[language]:
            if s := pattern.search(clause[:men.start]):
                men.side, men.side_span = side, s.span()
                return
        for pattern, side in self._after[language]:
            if s := pattern.search(clause[after:]):
                men.side, men.side_span = side, (after + s.start(), after + s.end())
                return

    def _clause(self, clause: str, language: str,
                reasons: set[str]) -> Iterator[tuple[list[str], str, str | None, bool]]:
        """(structures, relation, side, negated) per claim of one clause; why none in ``reasons``."""
        mentions = self._mentions(clause, language, reasons)
        if not mentions:
            reasons.add("no_structure_word")
            return
        if any(not m.labels() for m in mentions if m.base not in (MIDLINE, LESION)):
            reasons.add("side_not_in_label_vocabulary")  # why, should the clause yield nothing
        negated = bool(self._negation[language].search(clause))
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
            reasons.add("lesion_or_midline_only")
            return
        side = self._free_side(clause, mentions, language)
        if side is not None and not first.removed:
            if first.sideable() and first.side is None:
                first.side = side  # "Die Niere links ist klein": the left kidney
            else:
                yield from (([lab], "side", side, negated) for lab in first.labels())
                return
        absent = self._absent(clause, mentions, language)
        for i, men in enumerate(mentions):
            if men.base in (MIDLINE, LESION):
                continue
            yield from (([lab], "present", None, i in absent or men.removed) for lab in men.labels())

    def _absent(self, clause: str, mentions: list[Mention], language: str) -> set[int]:
        """Indices of the mentions a negation claims absent: those right after a trigger
        (fillers between: "no evidence of a spleen"), and all of the clause's when a trigger
        reaches a presence word or the end ("the spleen is not seen", "die Milz fehlt")."""
        out: set[int] = set()
        for t in self._negation[language].finditer(clause):
            filler = self._filler[language].match(clause, t.end())
            pos = filler.end() if filler else t.end()
            later = [i for i, m in enumerate(mentions) if m.start >= t.end()]
            if later and mentions[later[0]].start == pos:
                out.update(later)
            elif self._presence[language].match(clause, pos) or not clause[pos:].strip(" .,;:!?"):
                out.update(range(len(mentions)))
        return out

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


_ORDINAL_PERIOD = re.compile(rf"\s+(?:(?:und|oder|bis|-)\s+\d{{1,2}}\.\s+)*(?:{ORDINAL_NOUNS})\b", re.I)
_COORDINATED = re.compile(r"\.?\s*(?:,|and|or|to|und|oder|bis|-)\s*", re.I)


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans: a period, ! or ? followed by white space or the end, except after
    an abbreviation ("Z.n.", "e.g.", "M. psoas") or a German ordinal before a rib or vertebra
    ("7. Rippe"). Spans are stripped of surrounding white space."""
    spans, start = [], 0
    for m in re.finditer(r"[.!?]+(?=\s|$)", text):
        before = text[start:m.end()].lower()
        if any(before.endswith(a) and (len(before) == len(a) or not before[-len(a) - 1].isalpha())
               for a in ABBREVIATIONS):
            continue
        if m.group() == "." and re.search(r"(?:^|\s)\d{1,2}\.$", before) and _ORDINAL_PERIOD.match(text, m.end()):
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
