"""English and German report vocabulary mapped to the label vocabulary.

Structures map to TotalSegmentator-style base names (``voxqa.anatomy.labelnames``); the side
is attached from the words around the mention ("left kidney", "linke Niere", "Niere links",
"right nephrectomy"), and a plural or "both"/"beide" of a paired structure means both
sides. Relations, negation triggers and procedures that remove an organ
("status post splenectomy", "Z.n. Cholezystektomie") are lists of regular expressions,
matched whole-word and case-insensitively, longest first. ``docs/reports.md`` prints these
tables; a word that is not here is not read (the OpenAI extractor is for such reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from voxqa.anatomy.labelnames import display_name

MIDLINE = "midline"  # not a structure: "to the right of the midline" is a side claim
LESION = "lesion"  # any lesion label (``labelnames.is_lesion``)


@dataclass(frozen=True)
class Entry:
    """One structure word: its base label name, whether the form is plural, and (German)
    the grammatical gender for articles in questions."""

    base: str
    plural: bool = False
    gender: str = ""


#: Paired structures: a plural or "both" means the left and the right one.
PAIRED = frozenset({"kidney", "lung", "adrenal_gland", "lung_lower_lobe", "lung_upper_lobe",
                    "autochthon", "iliopsoas", "femur", "hip"})

STRUCTURES: dict[str, dict[str, Entry]] = {
    "en": {
        r"livers?|hepatic": Entry("liver"),
        r"spleen|splenic": Entry("spleen"),
        r"gall ?bladder": Entry("gallbladder"),
        r"stomach|gastric": Entry("stomach"),
        r"pancreas|pancreatic": Entry("pancreas"),
        r"kidney|renal": Entry("kidney"),
        r"kidneys": Entry("kidney", plural=True),
        r"adrenal(?: gland)?": Entry("adrenal_gland"),
        r"adrenals|adrenal glands": Entry("adrenal_gland", plural=True),
        r"lung": Entry("lung"),
        r"lungs": Entry("lung", plural=True),
        r"lower lobe": Entry("lung_lower_lobe"),
        r"lower lobes(?: of (?:the|both) lungs)?": Entry("lung_lower_lobe", plural=True),
        r"upper lobe": Entry("lung_upper_lobe"),
        r"upper lobes(?: of (?:the|both) lungs)?": Entry("lung_upper_lobe", plural=True),
        r"middle lobe": Entry("lung_middle_lobe_right"),
        r"aorta|aortic": Entry("aorta"),
        r"inferior vena cava|ivc": Entry("inferior_vena_cava"),
        r"spinal cord": Entry("spinal_cord"),
        r"(?:urinary )?bladder": Entry("urinary_bladder"),
        r"duodenum": Entry("duodenum"),
        r"colon": Entry("colon"),
        r"small (?:bowel|intestine)": Entry("small_bowel"),
        r"esophagus|oesophagus": Entry("esophagus"),
        r"heart": Entry("heart"),
        r"midline": Entry(MIDLINE),
        r"cyst|lesion|mass|nodule|tumou?r": Entry(LESION),
    },
    "de": {
        r"leber": Entry("liver", gender="f"),
        r"milz": Entry("spleen", gender="f"),
        r"gallenblase": Entry("gallbladder", gender="f"),
        r"magens?": Entry("stomach", gender="m"),
        r"pankreas|bauchspeicheldrüse": Entry("pancreas", gender="n"),
        r"niere": Entry("kidney", gender="f"),
        r"nieren": Entry("kidney", plural=True, gender="f"),
        r"nebenniere": Entry("adrenal_gland", gender="f"),
        r"nebennieren": Entry("adrenal_gland", plural=True, gender="f"),
        r"lunge": Entry("lung", gender="f"),
        r"lungen": Entry("lung", plural=True, gender="f"),
        r"unterlappens?": Entry("lung_lower_lobe", gender="m"),
        r"oberlappens?": Entry("lung_upper_lobe", gender="m"),
        r"mittellappens?": Entry("lung_middle_lobe_right", gender="m"),
        r"aorta": Entry("aorta", gender="f"),
        r"(?:untere[nr]? )?hohlvene|v(?:ena|\.) cava inferior": Entry("inferior_vena_cava", gender="f"),
        r"rückenmarks?": Entry("spinal_cord", gender="n"),
        r"harnblase": Entry("urinary_bladder", gender="f"),
        r"duodenums?|zwölffingerdarms?": Entry("duodenum", gender="n"),
        r"kolons?|colons?|dickdarms?": Entry("colon", gender="n"),
        r"dünndarms?": Entry("small_bowel", gender="m"),
        r"ösophagus|speiseröhre": Entry("esophagus", gender="m"),
        r"herz(?:ens)?": Entry("heart", gender="n"),
        r"mittellinie": Entry(MIDLINE, gender="f"),
        r"zyste|läsion|raumforderung|herd|knoten": Entry(LESION, gender="f"),
    },
}

#: Operations that remove an organ: the organ is claimed absent.
PROCEDURES: dict[str, dict[str, str]] = {
    "en": {r"splenectomy": "spleen", r"nephrectomy": "kidney", r"cholecystectomy": "gallbladder",
           r"adrenalectomy": "adrenal_gland", r"pneumonectomy": "lung", r"gastrectomy": "stomach"},
    "de": {r"splenektomie": "spleen", r"nephrektomie": "kidney", r"cholezystektomie": "gallbladder",
           r"adrenalektomie": "adrenal_gland", r"pneumonektomie": "lung", r"gastrektomie": "stomach"},
}
#: A partial resection leaves the organ: no absence claim.
PARTIAL = {"en": r"partial|hemi", "de": r"partielle[nr]?|teil"}

#: Side words right before a structure word ("left kidney", "linke Niere").
SIDE_BEFORE = {
    "en": {r"left": "left", r"right": "right", r"bilateral|both": "both"},
    "de": {r"linke[nrs]?": "left", r"rechte[nrs]?": "right", r"beide[nr]?|beidseitige[nr]?": "both"},
}
#: Side words right after one ("Niere links", "Nephrektomie links").
SIDE_AFTER = {
    "en": {r"bilaterally|on both sides": "both"},
    "de": {r"links": "left", r"rechts": "right", r"beidseits": "both"},
}
#: Side words anywhere else: the subject's side of the body ("in the right upper abdomen",
#: "Die Milz liegt rechts", "im rechten Oberbauch").
SIDE_FREE = {
    "en": {r"left": "left", r"right": "right"},
    "de": {r"links|linke[nrs]?": "left", r"rechts|rechte[nrs]?": "right"},
}

#: Each language's words for the patient's sides, as (right, left) stems and the endings they
#: take ("left"; "links", "linken", "rechter"): what the mirrored control swaps.
SIDE_STEMS = {"en": ("right", "left", r""), "de": ("recht", "link", r"s|e[nrs]?")}


@cache
def _side_pattern() -> re.Pattern[str]:
    words = [f"{stem}(?:{ends})" if ends else stem for right, left, ends in SIDE_STEMS.values()
             for stem in (right, left)]
    return re.compile(rf"\b({'|'.join(words)})\b", re.IGNORECASE)


def _mirror_word(word: str) -> str:
    low = word.lower()
    for right, left, _ in SIDE_STEMS.values():
        for stem, other in ((right, left), (left, right)):
            if low.startswith(stem) and _side_pattern().fullmatch(word):
                swapped = other + low[len(stem):]
                return swapped.capitalize() if word[0].isupper() else swapped
    return word


def mirror_sides(text: str) -> str:
    """``text`` as it reads of the patient mirrored left-right: every side word of every
    language the lexicon knows swapped ("the left kidney" -> "the right kidney", "rechts" ->
    "links", "der linken Niere" -> "der rechten Niere"); an involution."""
    return _side_pattern().sub(lambda m: _mirror_word(m.group(0)), text)


#: Relation phrases between two structures; "smaller" is "larger" with the two swapped.
_DE_OF = r"(?: (?:der|des|dem|den|von|vom|zur?|zum))?"
RELATIONS: dict[str, dict[str, str]] = {
    "en": {
        r"(?:superior|cranial|cephalad) to|above": "superior",
        r"(?:inferior|caudal) to|below|beneath": "inferior",
        r"anterior to|in front of|ventral to": "anterior",
        r"posterior to|behind|dorsal to": "posterior",
        r"(?:to the |on the )?left of": "left_of",
        r"(?:to the |on the )?right of": "right_of",
        r"medial to": "medial",
        r"lateral to": "lateral",
        r"adjacent to|abut(?:s|ting)?|in contact with|contacts|touch(?:es|ing)?|border(?:s|ing)?": "adjacent",
        r"larger than|bigger than": "larger",
        r"smaller than": "smaller",
        r"within|in(?: the)?": "within",
    },
    "de": {
        rf"kranial{_DE_OF}|oberhalb{_DE_OF}": "superior",
        rf"kaudal{_DE_OF}|unterhalb{_DE_OF}": "inferior",
        rf"ventral{_DE_OF}|vor(?: der| dem)": "anterior",
        rf"dorsal{_DE_OF}|hinter(?: der| dem)": "posterior",
        rf"links{_DE_OF}": "left_of",
        rf"rechts{_DE_OF}": "right_of",
        rf"medial{_DE_OF}": "medial",
        rf"lateral{_DE_OF}": "lateral",
        r"grenzt an|angrenzend an|(?:liegt|liegen) .{0,20}? an|in kontakt mit": "adjacent",
        r"größer als": "larger",
        r"kleiner als": "smaller",
        r"innerhalb|in der|im": "within",
    },
}

#: Negation (NegEx-style): a trigger negates the claims of its clause; a terminator ends
#: the clause ("no cyst, but ...").
NEGATION = {
    "en": r"no|not|without|absent|absence of|free of|negative for|nor",
    "de": r"kein(?:e|en|em|er|es)?|ohne|nicht|fehlt|fehlen|fehlend(?:e|en)?",
}
TERMINATORS = {"en": r"but|however|although|whereas", "de": r"aber|jedoch|sondern|während"}
#: Abbreviations that end in a period inside a sentence ("Z.n. Nephrektomie").
ABBREVIATIONS = ("z.n.", "z. n.", "v.a.", "z.b.", "ca.", "bzw.", "i.v.", "s.", "v.", "e.g.", "i.e.",
                 "dr.", "vs.", "approx.", "st.")


def compile_alternatives(table: dict[str, str]) -> list[tuple[re.Pattern[str], str]]:
    """Whole-word, case-insensitive patterns, the longest first (so "lower lobes of the
    lungs" wins over "lungs", "Nebenniere" over "Niere")."""
    return [(re.compile(rf"\b(?:{p})\b", re.IGNORECASE), v)
            for p, v in sorted(table.items(), key=lambda kv: -len(kv[0]))]


# --- how questions name things ---------------------------------------------------------------

_DE_NAMES = {
    "liver": "Leber", "spleen": "Milz", "gallbladder": "Gallenblase", "stomach": "Magen",
    "pancreas": "Pankreas", "kidney": "Niere", "adrenal_gland": "Nebenniere", "lung": "Lunge",
    "lung_lower_lobe": "Unterlappen", "lung_upper_lobe": "Oberlappen", "aorta": "Aorta",
    "inferior_vena_cava": "untere Hohlvene", "spinal_cord": "Rückenmark", "urinary_bladder": "Harnblase",
    "duodenum": "Duodenum", "colon": "Kolon", "small_bowel": "Dünndarm", "esophagus": "Ösophagus",
    "heart": "Herz",
}
_DE_GENDER = {e.base: e.gender for e in STRUCTURES["de"].values()}
_DE_ARTICLE = {("nom", "f"): "die", ("nom", "m"): "der", ("nom", "n"): "das",
               ("dat", "f"): "der", ("dat", "m"): "dem", ("dat", "n"): "dem",
               ("acc", "f"): "die", ("acc", "m"): "den", ("acc", "n"): "das"}
_DE_ADJ = {("nom", "f"): "e", ("nom", "m"): "e", ("nom", "n"): "e",
           ("dat", "f"): "en", ("dat", "m"): "en", ("dat", "n"): "en",
           ("acc", "f"): "e", ("acc", "m"): "en", ("acc", "n"): "e"}


def name(label: str, language: str, case: str = "nom") -> str:
    """A structure as a question names it, with its article: "the left kidney",
    "die linke Niere" / (dative) "der linken Niere"; ``case`` "zu" gives "zur linken Niere"."""
    if case == "zu":
        article, rest = name(label, language, "dat").split(" ", 1)
        return {"der": "zur", "dem": "zum"}[article] + " " + rest
    if language != "de":
        return f"the {display_name(label)}"
    tokens = label.split("_")
    side = tokens.pop() if tokens[-1] in ("left", "right") else None
    base = "_".join(tokens)
    noun = _DE_NAMES.get(base, display_name(base))
    gender = _DE_GENDER.get(base, "f")
    adjective = f"{'link' if side == 'left' else 'recht'}{_DE_ADJ[case, gender]} " if side else ""
    return f"{_DE_ARTICLE[case, gender]} {adjective}{noun}"



@cache
def _keyword_tables() -> list[tuple[list, list]]:
    return [(compile_alternatives(STRUCTURES[lang]), compile_alternatives(SIDE_FREE[lang])) for lang in STRUCTURES]


def canonical_keyword(word: str) -> str:
    """A grounded keyword as a label name when the lexicon knows it ("Leber", "hepatic",
    "the liver" -> "liver"; "linke Niere" -> "kidney_left"), else lower-cased and trimmed:
    what keyword matching compares offline."""
    text = " ".join(word.lower().split())
    for structures, sides in _keyword_tables():
        for pattern, entry in structures:
            if pattern.search(text):
                side = next((v for p, v in sides if p.search(text)), None)
                return f"{entry.base}_{side}" if side else entry.base
    return text
