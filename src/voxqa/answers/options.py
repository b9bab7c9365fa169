"""Option letters: the one place an option index becomes a letter (A, B, C, ...) and back,
and the option reading that single and multiple choice share.

Option texts are blanked (``mark_options``) before letters are sought, so an option such as
"Grade C" or "vertebrae_L1" cannot add a letter.
"""

from __future__ import annotations

import re

from voxqa.answers.reply import ParseError, normal


def letter(index: int) -> str:
    """The letter of the option at 0-based ``index``: 0 -> "A"."""
    return chr(ord("A") + index)


def marked(index: int) -> str:
    """The letter as prompts and targets list options: 0 -> "(A)"."""
    return f"({letter(index)})"


def letters(indices: list[int] | tuple[int, ...]) -> str:
    """Several options as a reply names them: [0, 2] -> "A, C"."""
    return ", ".join(letter(i) for i in indices)


def index_of(name: str) -> int:
    """The 0-based option index of letter ``name`` (either case): "B" -> 1."""
    return ord(name.upper()) - ord("A")


def letter_index(name: str, options: list[str]) -> int:
    """``index_of`` an option letter of the item's ``options``; past the last option fails."""
    index = index_of(name)
    if index >= len(options):
        raise ParseError(f"letter {name.upper()} is past the last of {len(options)} options")
    return index

_LETTER_MARK = re.compile(
    r"(?<!\w)\(([A-Za-z])\)"  # (B); not the "(s)" of "lesion(s)"
    r"|\b(?i:option)\s+([A-Za-z])\b"  # Option B
    r"|(?<![\w(-])([A-Z])[.):](?=\s|$)"  # B.  B)  B:
    r"|(?<![\w-])([B-HJ-Z])(?![\w-])"  # a bare capital ...
    r"|(?<![\w-])([AI])(?=\s*(?:$|[,;/]|\b(?:and|or)\b))"  # ... but A and I are words too
)
_LONE_LETTER = re.compile(r"\W*(?:option\s+)?([A-Za-z])\W*", re.IGNORECASE)
LETTER_TOKEN = re.compile(r"\(?([A-Za-z])[.):]?")
_BLANKED = "\x00{}\x00"
PLACEHOLDER = re.compile(r"\x00(\d+)\x00")  # an option text blanked by mark_options


def option_by_text(text: str, options: list[str]) -> int | None:
    """The option whose whole text ``text`` is, if exactly one."""
    hits = [i for i, o in enumerate(options) if normal(o) == normal(text)]
    return hits[0] if len(hits) == 1 else None


def mark_options(text: str, options: list[str]) -> str:
    """``text`` with every option text replaced by a letter-free placeholder (longest first),
    so letters inside option texts ("Grade C", "vertebrae_L1") are never read as answers."""
    for i in sorted(range(len(options)), key=lambda i: -len(options[i])):
        pattern = r"(?<!\w)" + re.escape(options[i].strip()) + r"(?!\w)"
        text = re.sub(pattern, _BLANKED.format(i), text, flags=re.IGNORECASE)
    return text


def named_letters(text: str) -> set[str]:
    """Upper-case option letters named in ``text`` (option texts already replaced)."""
    lone = _LONE_LETTER.fullmatch(PLACEHOLDER.sub(" ", text))
    if lone:
        return {lone[1].upper()}
    return {next(g for g in m.groups() if g).upper() for m in _LETTER_MARK.finditer(text)}
