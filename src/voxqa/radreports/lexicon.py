"""English and German report vocabulary mapped to the label vocabulary.

Structures cover every class of TotalSegmentator's CT (``total``, 117) and MR (``total_mr``, 50)
tasks (``labelnames.TOTALSEG_CT`` / ``TOTALSEG_MR``: 121 names, RadGrounder's classes). What is
systematic is generated from the class names; the rest is a small table:

* sides: a class ``X_left`` / ``X_right`` makes ``X`` paired (a plural or "both"/"beide" means
  both sides; "left"/"linke" before it, "on the left"/"links" after it picks one); a base with
  one side only (``lung_middle_lobe_right``, ``atrial_appendage_left``) takes that side;
* levels: vertebrae C1-C7, T1-T12, L1-L5, S1 ("L1", "L1 vertebra", "first lumbar vertebra",
  "LWK 1", "Th12", "1. Lendenwirbel") and ribs 1-12 ("7th left rib", "rib 7", "7. Rippe rechts");
* English names: each class name's own words ("adrenal gland", "portal vein and splenic vein")
  and their plural;
* ``EN_WORDS`` / ``DE_WORDS``: synonyms and adjectives ("renal", "hepatic", "sacral"), the
  German nouns with their inflections and gender, and German compounds (``DE_COMPOUNDS``:
  "Nierenzyste" is a kidney and a lesion, "Leberhilus" the liver).

The side is attached from the words around a mention ("left kidney", "linke Niere", "Niere
links", "right nephrectomy"). Relations, negation triggers, presence words and procedures that
remove an organ ("status post splenectomy", "Z.n. Cholezystektomie") are lists of regular
expressions, matched whole-word and case-insensitively; where matches overlap the longest
wins. ``docs/reports.md`` prints these tables; a word that is not here is not read (the OpenAI
extractor is for such reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from voxqa.anatomy.labelnames import SPINE_SEGMENTS, TOTALSEG_CT, TOTALSEG_MR, display_name, parse_name

MIDLINE = "midline"  # not a structure: "to the right of the midline" is a side claim
LESION = "lesion"  # any lesion label (``labelnames.is_lesion``)
RIB = "rib"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Entry:
    """One structure word: its base label name, whether the form is plural, (German) the
    grammatical gender, the side the word itself names ("RUL") and a rib's number."""

    base: str
    plural: bool = False
    gender: str = ""
    side: str | None = None
    level: int | None = None


#: Every class name of TotalSegmentator's CT and MR tasks (RadGrounder's 121 classes).
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(TOTALSEG_CT + TOTALSEG_MR))


def _sides_by_base() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for name in VOCABULARY:
        base, side, _ = parse_name(name)
        out.setdefault(base, set()).update([side] if side else [])
    return {b: frozenset(s) for b, s in out.items()}


_SIDES_BY_BASE = _sides_by_base()
#: Paired structures: a plural or "both" means the left and the right one.
PAIRED = frozenset(b for b, s in _SIDES_BY_BASE.items() if len(s) == 2)
#: Structures the label vocabulary has on one side only: the word names that one.
ONE_SIDED = {b: next(iter(s)) for b, s in _SIDES_BY_BASE.items() if len(s) == 1}
#: Lesion classes (read through the lesion words: "left renal cyst").
_LESION_BASES = frozenset({"kidney_cyst"})
_VERTEBRA = re.compile(r"vertebrae_([CTLS])(\d{1,2})")

# --- the table: synonyms, adjectives and German nouns -------------------------------------------

_M = r"(?:(?:m\.|musculus)\s+)?"  # "M. iliopsoas", "Musculus gluteus maximus"
_MUSCLE = r"(?:\s+muscle)?"
#: base -> (English singular words, English plural words), besides the class name's own words.
EN_WORDS: dict[str, tuple[str, str]] = {
    "spleen": (r"splenic", ""),
    "kidney": (r"renal", ""),
    "gallbladder": (r"gall bladder", r"gall ?bladders"),
    "liver": (r"hepatic", ""),
    "stomach": (r"gastric", ""),
    "pancreas": (r"pancreatic", ""),
    "adrenal_gland": (r"adrenal|suprarenal(?: gland)?", r"adrenals|suprarenal glands"),
    "lung_upper_lobe": (r"upper lobe|upper lobe of the (?P<side>left|right) lung", r"upper lobes(?: of (?:the|both) lungs)?"),
    "lung_lower_lobe": (r"lower lobe|lower lobe of the (?P<side>left|right) lung", r"lower lobes(?: of (?:the|both) lungs)?"),
    "lung_middle_lobe": (r"middle lobe|middle lobe of the right lung", ""),
    "esophagus": (r"oesophagus|o?esophageal", ""),
    "trachea": (r"tracheal", ""),
    "thyroid_gland": (r"thyroid", ""),
    "small_bowel": (r"small intestine|jejunum|jejunal|ileum|ileal", r"small bowel loops"),
    "duodenum": (r"duodenal", ""),
    "colon": (r"colonic|large bowel|large intestine|sigmoid(?: colon)?|c(?:a)?ecum", ""),
    "urinary_bladder": (r"bladder", ""),
    "prostate": (r"prostatic|prostate gland", ""),
    "sacrum": (r"sacral|os sacrum", ""),
    "heart": (r"cardiac", ""),
    "aorta": (r"aortic", ""),
    "brachiocephalic_trunk": (r"innominate artery|brachiocephalic artery", ""),
    "common_carotid_artery": (r"carotid(?: artery)?", r"carotid arteries|carotids"),
    "brachiocephalic_vein": (r"innominate vein", r"innominate veins"),
    "superior_vena_cava": (r"svc", ""),
    "inferior_vena_cava": (r"ivc", ""),
    "portal_vein_and_splenic_vein": (r"portal vein|splenic vein|portal venous system|(?:porto|spleno)"
                                     r"(?:splenic|portal) (?:vein|confluence)|portal confluence", ""),
    "iliac_artery": (r"common iliac artery", r"common iliac arteries"),
    "iliac_vena": (r"(?:common )?iliac vein", r"(?:common )?iliac veins"),
    "humerus": (r"humeral(?: head)?", r"humeri"),
    "scapula": (r"scapular|shoulder blade", r"scapulae|shoulder blades"),
    "clavicula": (r"clavicle|clavicular|collar ?bone", r"clavicles|claviculae|collar ?bones"),
    "femur": (r"femoral(?: head| neck)?|thigh bone", r"femora|femoral heads"),
    "hip": (r"hip bone|ilium|iliac (?:bone|wing|crest)|ischium|pubic bone|os coxae|innominate bone|acetabul(?:um|ar)",
            r"hip bones|iliac (?:bones|wings)|pubic bones|innominate bones"),
    "spinal_cord": (r"spinal canal|myelon|thecal sac", ""),
    "gluteus_maximus": (rf"{_M}glut(?:a)?eus\s+maximus{_MUSCLE}", r"glut(?:a)?eus\s+maximus\s+muscles"),
    "gluteus_medius": (rf"{_M}glut(?:a)?eus\s+medius{_MUSCLE}", r"glut(?:a)?eus\s+medius\s+muscles"),
    "gluteus_minimus": (rf"{_M}glut(?:a)?eus\s+minimus{_MUSCLE}", r"glut(?:a)?eus\s+minimus\s+muscles"),
    "autochthon": (r"autochthon(?:ous)?(?: back)? muscle|(?:m\.\s+)?erector spinae(?: muscle)?|"
                   r"paraspinal muscle|paravertebral muscle",
                   r"autochthon(?:ous)?(?: back)? muscles|erector spinae muscles|paraspinal muscles|"
                   r"paraspinal musculature|paravertebral muscles"),
    "iliopsoas": (rf"{_M}(?:ilio)?psoas{_MUSCLE}", r"(?:ilio)?psoas muscles"),
    "brain": (r"cerebral|cerebrum", ""),
    "skull": (r"cranium|calvari(?:a|um|al)|cranial vault", ""),
    "rib": (r"rib", r"ribs"),
    "sternum": (r"sternal|breast ?bone", ""),
    "costal_cartilages": (r"costal cartilage", ""),
    "lung": (r"pulmonary", ""),
    "intervertebral_discs": (r"intervertebral dis[ck]|dis[ck]|dis[ck] space", r"dis[ck]s|intervertebral disks|dis[ck] spaces"),
    "vertebrae": (r"vertebra|vertebral body|vertebral column|spinal column|spine", r"vertebral bodies"),
    "lumbar_spine": (r"lumbar spine|lumbar vertebrae", ""),
    "thoracic_spine": (r"thoracic spine|thoracic vertebrae", ""),
    "cervical_spine": (r"cervical spine|cervical vertebrae", ""),
    MIDLINE: (r"midline", ""),
    LESION: (r"cysts?|lesions?|mass(?:es)?|nodules?|tumou?rs?|metastas[ie]s|adenomas?|h(?:a)?emangiomas?", ""),
}

_A = r"(?:arteria|a\.)\s+"
_V = r"(?:vena|v\.)\s+"
#: base -> (German name, gender, singular words, plural words). The name is how questions say
#: it; a name's leading adjective ("untere Hohlvene") is declined with the article.
DE_WORDS: dict[str, tuple[str, str, str, str]] = {
    "spleen": ("Milz", "f", r"milz|lien|lienale[nrms]?|lienal", ""),
    "kidney": ("Niere", "f", r"niere|renale[nrms]?|renal", r"nieren"),
    "gallbladder": ("Gallenblase", "f", r"gallenblase", ""),
    "liver": ("Leber", "f", r"leber|hepar|hepatische[nrms]?|hepatisch", ""),
    "stomach": ("Magen", "m", r"magens?|gastrale[nrms]?", ""),
    "pancreas": ("Pankreas", "n", r"pankreas|bauchspeicheldrüse|pankreatische[nrms]?", ""),
    "adrenal_gland": ("Nebenniere", "f", r"nebenniere|adrenale[nrms]?", r"nebennieren"),
    "lung_upper_lobe": ("Oberlappen", "m", r"(?:lungen)?oberlappens?|oberlappens? der (?P<side>linken|rechten) lunge",
                        ""),
    "lung_lower_lobe": ("Unterlappen", "m", r"(?:lungen)?unterlappens?|unterlappens? der (?P<side>linken|rechten) lunge",
                        ""),
    "lung_middle_lobe": ("Mittellappen", "m", r"(?:lungen)?mittellappens?", ""),
    "esophagus": ("Ösophagus", "m", r"ösophagus|oesophagus|speiseröhre", ""),
    "trachea": ("Trachea", "f", r"trachea|luftröhre", ""),
    "thyroid_gland": ("Schilddrüse", "f", r"schilddrüse", ""),
    "small_bowel": ("Dünndarm", "m", r"dünndarms?|jejunums?|ileums?", r"dünndarmschlingen"),
    "duodenum": ("Duodenum", "n", r"duodenums?|zwölffingerdarms?|duodenale[nrms]?", ""),
    "colon": ("Kolon", "n", r"kolons?|colons?|dickdarms?|sigmas?|zäkums?|zökums?|coecums?", ""),
    "urinary_bladder": ("Harnblase", "f", r"harnblase", ""),
    "prostate": ("Prostata", "f", r"prostata", ""),
    "sacrum": ("Kreuzbein", "n", r"kreuzbein(?:e?s)?|os sacrum|sakrums?|sacrums?|sakrale[nrms]?", ""),
    "heart": ("Herz", "n", r"herz(?:ens|en)?|kardiale[nrms]?|kardial", ""),
    "aorta": ("Aorta", "f", r"aorta|hauptschlagader|aortale[nrms]?", ""),
    "pulmonary_vein": ("Lungenvene", "f", r"lungenvene|pulmonalvene", r"lungenvenen|pulmonalvenen"),
    "brachiocephalic_trunk": ("Truncus brachiocephalicus", "m", r"truncus brachiocephalicus", ""),
    "subclavian_artery": ("Arteria subclavia", "f", rf"{_A}subclavia", r"(?:arteriae|aa\.)\s+subclaviae"),
    "common_carotid_artery": ("Arteria carotis communis", "f",
                              rf"{_A}carotis(?:\s+communis)?|karotis|carotis|halsschlagader",
                              r"(?:arteriae|aa\.)\s+carotides(?:\s+communes)?|karotiden|halsschlagadern"),
    "brachiocephalic_vein": ("Vena brachiocephalica", "f", rf"{_V}brachiocephalica",
                             r"(?:venae|vv\.)\s+brachiocephalicae"),
    "atrial_appendage": ("Herzohr", "n", r"herzohr(?:e?s)?|vorhofohr(?:e?s)?", ""),
    "superior_vena_cava": ("obere Hohlvene", "f", r"obere[nr]? hohlvene|v(?:ena|\.) cava superior", ""),
    "inferior_vena_cava": ("untere Hohlvene", "f", r"(?:untere[nr]? )?hohlvene|v(?:ena|\.) cava inferior", ""),
    "portal_vein_and_splenic_vein": ("Pfortader", "f", rf"pfortader|{_V}portae|milzvene|{_V}lienalis|pfortadersystem",
                                     ""),
    "iliac_artery": ("Arteria iliaca communis", "f", rf"{_A}iliaca(?:\s+communis)?|beckenarterie|iliakalarterie",
                     r"(?:arteriae|aa\.)\s+iliacae(?:\s+communes)?|beckenarterien|iliakalarterien"),
    "iliac_vena": ("Vena iliaca communis", "f", rf"{_V}iliaca(?:\s+communis)?|beckenvene|iliakalvene",
                   r"(?:venae|vv\.)\s+iliacae(?:\s+communes)?|beckenvenen|iliakalvenen"),
    "humerus": ("Humerus", "m", r"humerus|oberarmknochens?|humeruskopf(?:e?s)?|humerale[nrms]?", r"humeri"),
    "scapula": ("Skapula", "f", r"skapula|scapula|schulterblatt(?:e?s)?", r"skapulae|scapulae|schulterblätter(?:n)?"),
    "clavicula": ("Klavikula", "f", r"klavikula|clavicula|schlüsselbein(?:e?s)?",
                  r"klavikulae|claviculae|schlüsselbeine(?:n)?"),
    "femur": ("Femur", "n", r"femurs?|oberschenkelknochens?|oberschenkelhals(?:es)?|femurkopf(?:e?s)?|hüftkopf(?:e?s)?|"
              r"femorale[nrms]?", r"femora|oberschenkelknochen"),
    "hip": ("Hüftbein", "n", r"hüftbein(?:e?s)?|hüftknochens?|hüfte|darmbein(?:e?s)?|os ilium|os ilii|beckenschaufel|"
            r"sitzbein(?:e?s)?|schambein(?:e?s)?|os coxae|azetabulums?|acetabulums?",
            r"hüftbeine(?:n)?|hüften|darmbeine(?:n)?|beckenschaufeln"),
    "spinal_cord": ("Rückenmark", "n", r"rückenmarks?|myelons?|spinalkanals?", ""),
    "gluteus_maximus": ("Musculus gluteus maximus", "m", rf"{_M}glut(?:a)?eus\s+maximus|große[nrs]?\s+gesäßmuskels?",
                        r"großen\s+gesäßmuskeln"),
    "gluteus_medius": ("Musculus gluteus medius", "m", rf"{_M}glut(?:a)?eus\s+medius|mittlere[nrs]?\s+gesäßmuskels?",
                       r"mittleren\s+gesäßmuskeln"),
    "gluteus_minimus": ("Musculus gluteus minimus", "m", rf"{_M}glut(?:a)?eus\s+minimus|kleine[nrs]?\s+gesäßmuskels?",
                        r"kleinen\s+gesäßmuskeln"),
    "autochthon": ("autochthone Rückenmuskulatur", "f", r"autochthone[nr]?\s+rückenmuskulatur|rückenstrecker[ns]?|"
                   r"paravertebrale[nr]?\s+muskulatur|(?:m\.\s+|musculus\s+)?erector\s+spinae", ""),
    "iliopsoas": ("Musculus iliopsoas", "m", rf"{_M}(?:ilio)?psoas|(?:ilio)?psoasmuskels?|lenden-darmbein-muskels?",
                  r"(?:ilio)?psoasmuskeln"),
    "brain": ("Gehirn", "n", r"gehirn(?:e?s)?|hirns?|zerebrums?|cerebrums?|zerebrale[nrms]?|zerebral", ""),
    "skull": ("Schädel", "m", r"schädels?|kalotte|schädelkalotte|kranium|cranium|neurokranium", ""),
    "rib": ("Rippe", "f", r"rippe", r"rippen"),
    "sternum": ("Sternum", "n", r"sternums?|brustbein(?:e?s)?", ""),
    "costal_cartilages": ("Rippenknorpel", "m", r"rippenknorpels?", r"rippenknorpeln"),
    "lung": ("Lunge", "f", r"lunge|pulmonale[nrms]?|pulmonal", r"lungen"),
    "intervertebral_discs": ("Bandscheibe", "f", r"bandscheibe|zwischenwirbelscheibe",
                             r"bandscheiben|zwischenwirbelscheiben"),
    "vertebrae": ("Wirbelsäule", "f", r"wirbelsäule|wirbelkörpers?|wirbels?", r"wirbelkörpern|wirbeln"),
    "lumbar_spine": ("Lendenwirbelsäule", "f", r"lendenwirbelsäule|lws", ""),
    "thoracic_spine": ("Brustwirbelsäule", "f", r"brustwirbelsäule|bws", ""),
    "cervical_spine": ("Halswirbelsäule", "f", r"halswirbelsäule|hws", ""),
    MIDLINE: ("Mittellinie", "f", r"mittellinie", ""),
    LESION: ("Läsion", "f", r"zysten?|läsion(?:en)?|raumforderung(?:en)?|(?:rund)?herde?s?|knoten|tumou?r(?:e|en)?|"
             r"metastasen?|adenome?s?|hämangiome?s?", ""),
}

#: German compound stems: "Nierenzyste" is the kidney and a lesion in it, "Leberhilus" the liver.
DE_COMPOUNDS: dict[str, str] = {
    "nebennieren": "adrenal_gland", "nieren": "kidney", "leber": "liver", "milz": "spleen", "lungen": "lung",
    "herz": "heart", "magen": "stomach", "pankreas": "pancreas", "gallenblasen": "gallbladder",
    "schilddrüsen": "thyroid_gland", "prostata": "prostate", "harnblasen": "urinary_bladder", "aorten": "aorta",
    "gehirn": "brain", "hirn": "brain", "schädel": "skull", "rippen": RIB, "wirbelsäulen": "vertebrae",
    "wirbelkörper": "vertebrae", "hüft": "hip", "oberschenkel": "femur", "femur": "femur", "oberarm": "humerus",
    "humerus": "humerus", "brustbein": "sternum", "sternum": "sternum", "kreuzbein": "sacrum",
    "ösophagus": "esophagus", "speiseröhren": "esophagus", "trachea": "trachea", "luftröhren": "trachea",
    "kolon": "colon", "dickdarm": "colon", "dünndarm": "small_bowel", "duodenal": "duodenum", "psoas": "iliopsoas",
    "bandscheiben": "intervertebral_discs", "rückenmarks": "spinal_cord", "schulterblatt": "scapula",
    "schlüsselbein": "clavicula", "pfortader": "portal_vein_and_splenic_vein",
}

#: Abbreviations that name a side themselves.
EN_SIDED = {r"rul": ("lung_upper_lobe", "right"), r"lul|lingula|lingular": ("lung_upper_lobe", "left"),
            r"rll": ("lung_lower_lobe", "right"), r"lll": ("lung_lower_lobe", "left"),
            r"rml": ("lung_middle_lobe", "right"), r"laa": ("atrial_appendage", "left")}

# --- levels: vertebrae and ribs ---------------------------------------------------------------

_EN_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
                "eleventh", "twelfth")
_DE_ORDINALS = ("erste", "zweite", "dritte", "vierte", "fünfte", "sechste", "sieb(?:en)?te", "achte", "neunte",
                "zehnte", "elfte", "zwölfte")
_DE_ORDINAL_NAMES = ("erst", "zweit", "dritt", "viert", "fünft", "sechst", "siebt", "acht", "neunt", "zehnt", "elft",
                     "zwölft")
#: vertebra letter -> (English region, German stem, German vertebral-body abbreviation)
_REGIONS = {"C": ("cervical", "hals", "hwk"), "T": ("thoracic", "brust", "bwk"), "L": ("lumbar", "lenden", "lwk"),
            "S": ("sacral", "sakral", "swk")}
_EN_SUFFIX = {1: "st", 2: "nd", 3: "rd"}


def _en_ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else _EN_SUFFIX.get(n % 10, "th")
    return f"(?:{n}{suffix}|{_EN_ORDINALS[n - 1]})"


def _vertebra_code(letter: str, n: int, bare: bool = False) -> str:
    """A level as written ("L1", "Th12"); alone (``bare``) "T1"-"T4" are MR weightings or TNM
    stages and "S1" a liver segment, so those need "Th" or a vertebra word."""
    if letter == "T":
        return rf"th\s?{n}" if bare and n <= 4 else rf"th?\s?{n}"
    return "" if bare and letter == "S" else rf"{letter.lower()}{n}"


def _vertebra_words(letter: str, n: int) -> tuple[list[str], list[str]]:
    region, de_stem, abbreviation = _REGIONS[letter]
    code, bare = _vertebra_code(letter, n), _vertebra_code(letter, n, bare=True)
    en = [rf"(?:{code})\s+vertebra(?:l\s+body)?", rf"vertebra(?:l\s+body)?\s+(?:{code})",
          rf"{_en_ordinal(n)}\s+{region}\s+vertebra(?:l\s+body)?"]
    de = [rf"{abbreviation}\s?{n}", rf"{de_stem}wirbel(?:körper)?s?\s+{n}",
          rf"(?:{n}\.\s*|{_DE_ORDINALS[n - 1]}[nrs]?\s+){de_stem}wirbel(?:körper)?s?",
          rf"wirbel(?:körper)?s?\s+(?:{code})", rf"(?:{code})\s+wirbel(?:körper)?s?"]
    if bare:
        en.append(bare)
        de.append(bare)
    return en, de


_EN_AND = r"(?:\s*(?:,|and|or|to|-)\s*(?:\d{1,2}(?:st|nd|rd|th)|[a-z]+th|first|second|third|fifth|eighth|ninth|twelfth))+"
_DE_AND = r"(?:\s*(?:,|und|oder|bis|-)\s*\d{1,2}\.)+"


def _rib_words(n: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(English singular, plural, German singular, plural) patterns of rib ``n``; an ordinal
    in a list before the rib word ("9th and 10th ribs", "9. und 10. Rippe") is rib ``n`` too."""
    de_ord = rf"(?:{n}\.\s*|{_DE_ORDINALS[n - 1]}[nrs]?\s+)"
    return ([rf"{_en_ordinal(n)}(?:\s+(?P<side>left|right))?\s+rib", rf"rib\s+{n}",
             rf"{_en_ordinal(n)}(?={_EN_AND}\s+(?:(?:left|right)\s+)?ribs?\b)"],
            [rf"{_en_ordinal(n)}\s+ribs"],
            [rf"{de_ord}(?:(?P<side>linke|rechte)[nrs]?\s+)?rippe", rf"rippe\s+{n}",
             rf"{n}(?=\.{_DE_AND}\s*(?:(?:linke|rechte)[nrs]?\s+)?rippen?\b)"],
            [rf"{de_ord}rippen"])


def _plural(word: str) -> str:
    if word.endswith(("s", "ae")):
        return word
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("x", "ch", "sh")) else "s")


def _class_words(base: str) -> tuple[str, str]:
    """The class name's own English words and their plural ("adrenal gland(s)")."""
    words = display_name(base).split()
    return r"\s+".join(words), r"\s+".join([*words[:-1], _plural(words[-1])])


def _structures() -> dict[str, dict[str, Entry]]:
    en: dict[str, Entry] = {}
    de: dict[str, Entry] = {}
    bases = sorted(b for b in _SIDES_BY_BASE if b not in _LESION_BASES and not _VERTEBRA.fullmatch(b))
    for base in [*bases, *SPINE_SEGMENTS, MIDLINE, LESION]:
        singular, plural = EN_WORDS.get(base, ("", ""))
        if base not in (MIDLINE, LESION) and base not in SPINE_SEGMENTS:
            own, own_plural = _class_words(base)
            if own not in singular.split("|"):
                singular = "|".join(p for p in (own, singular) if p)
            if base in PAIRED and own_plural != own and own_plural not in plural.split("|"):
                plural = "|".join(p for p in (own_plural, plural) if p)
        en[singular] = Entry(base)
        if plural:
            en[plural] = Entry(base, plural=True)
        _, gender, de_singular, de_plural = DE_WORDS[base]
        de[de_singular] = Entry(base, gender=gender)
        if de_plural:
            de[de_plural] = Entry(base, plural=True, gender=gender)
    for name in VOCABULARY:
        if m := _VERTEBRA.fullmatch(name):
            en_words, de_words = _vertebra_words(m[1], int(m[2]))
            en |= {p: Entry(name) for p in en_words}
            de |= {p: Entry(name, gender="m") for p in de_words}
    for n in range(1, 13):
        en_one, en_many, de_one, de_many = _rib_words(n)
        en |= {p: Entry(RIB, level=n) for p in en_one} | {p: Entry(RIB, plural=True, level=n) for p in en_many}
        de |= {p: Entry(RIB, gender="f", level=n) for p in de_one}
        de |= {p: Entry(RIB, plural=True, gender="f", level=n) for p in de_many}
    en |= {p: Entry(base, side=side) for p, (base, side) in EN_SIDED.items()}
    return {"en": en, "de": de}


#: Structure words per language: regular expression -> Entry (generated, see the module doc).
STRUCTURES: dict[str, dict[str, Entry]] = _structures()

#: Operations that remove an organ: the organ is claimed absent.
PROCEDURES: dict[str, dict[str, str]] = {
    "en": {r"splenectomy": "spleen", r"nephrectomy": "kidney", r"cholecystectomy": "gallbladder",
           r"adrenalectomy": "adrenal_gland", r"pneumonectomy": "lung", r"gastrectomy": "stomach",
           r"pancreatectomy": "pancreas", r"thyroidectomy": "thyroid_gland", r"prostatectomy": "prostate",
           r"colectomy": "colon", r"cystectomy": "urinary_bladder", r"esophagectomy|oesophagectomy": "esophagus",
           r"lobectomy": "lung_upper_lobe"},
    "de": {r"splenektomie": "spleen", r"nephrektomie": "kidney", r"cholezystektomie": "gallbladder",
           r"adrenalektomie": "adrenal_gland", r"pneumonektomie": "lung", r"gastrektomie": "stomach",
           r"pankreatektomie": "pancreas", r"thyreoidektomie": "thyroid_gland", r"prostatektomie": "prostate",
           r"kolektomie": "colon", r"zystektomie": "urinary_bladder", r"ösophagektomie": "esophagus"},
}
#: A partial resection leaves the organ: no absence claim.
PARTIAL = {"en": r"partial|hemi", "de": r"partielle[nr]?|teil"}

#: Side words right before a structure word ("left kidney", "linke Niere").
SIDE_BEFORE = {
    "en": {r"left|left-sided": "left", r"right|right-sided": "right", r"bilateral|both": "both"},
    "de": {r"linke[nrs]?|linksseitige[nrs]?": "left", r"rechte[nrs]?|rechtsseitige[nrs]?": "right",
           r"beide[nr]?|beidseitige[nr]?": "both"},
}
#: Side words right after one ("Niere links", "11th rib on the right", "Nephrektomie links").
SIDE_AFTER = {
    "en": {r"on the left(?! (?:side )?of)(?: side)?": "left", r"on the right(?! (?:side )?of)(?: side)?": "right",
           r"bilaterally|on both sides": "both"},
    "de": {r"links|linksseitig": "left", r"rechts|rechtsseitig": "right", r"beidseits": "both"},
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


def side_word(word: str) -> str:
    """"left"/"right" of a side word of either language ("linken" -> "left")."""
    return "left" if word.lower().startswith(("left", "link")) else "right"


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

#: Negation (NegEx-style): a trigger negates the relation claims of its clause; a terminator
#: ends the clause ("no cyst, but ..."). A presence claim is negated only where the trigger
#: is about presence: right before the structure ("no spleen", "keine Milz", "absence of the
#: gallbladder", fillers like "evidence of" between), or before a presence word or the end of
#: the clause ("the spleen is not seen", "Milz nicht abgrenzbar", "die Milz fehlt"). "The
#: spleen is not enlarged" and "no free fluid around the liver" claim the organ present.
NEGATION = {
    "en": r"no|not|cannot|without|absent|absence of|free of|negative for|neither|nor",
    "de": r"kein(?:e|en|em|er|es)?|ohne|nicht|fehlt|fehlen|fehlend(?:e|en)?",
}
#: Words a negation may skip on its way to a structure or a presence word.
NEGATION_FILLER = {
    "en": r"the|a|an|any|evidence|signs?|of|for|definite|residual|remaining|native|longer|be|is|are|was|were|"
          r"been|clearly|well|definitely|reliably|separately|left|right|both|bilateral",
    "de": r"der|die|das|des|dem|den|ein|eine[nrms]?|nachweis|hinweis(?:e)?|anhalt|von|vom|für|auf|mehr|sicher|"
          r"eindeutig|separat|gut|ist|sind|mit|linke[nrs]?|rechte[nrs]?|beide[nr]?|residuelle[nrs]?|"
          r"verbliebene[nrs]?",
}
#: Presence words: what a negation must reach (or the structure) to claim it absent.
PRESENCE = {
    "en": r"visible|visuali[sz]ed|visuali[sz]able|identified|identifiable|seen|present|depicted|demonstrated|"
          r"shown|imaged|delineated|appreciated|detected|detectable|evident|observed|included|noted|"
          r"discernible|apparent",
    "de": r"abgebildet|mitabgebildet|darstellbar|dargestellt|sichtbar|erkennbar|abgrenzbar|abzugrenzen|"
          r"nachweisbar|nachgewiesen|vorhanden|zu sehen|erfasst|miterfasst|identifizierbar|auffindbar|einsehbar",
}
TERMINATORS = {"en": r"but|however|although|whereas", "de": r"aber|jedoch|sondern|während"}
#: Abbreviations that end in a period inside a sentence ("Z.n. Nephrektomie", "M. psoas").
ABBREVIATIONS = ("z.n.", "z. n.", "v.a.", "z.b.", "ca.", "bzw.", "i.v.", "s.", "v.", "e.g.", "i.e.",
                 "dr.", "vs.", "approx.", "st.", "m.", "a.", "aa.", "vv.")
#: A German ordinal's period does not end a sentence before these ("7. Rippe", "1. Lendenwirbel").
ORDINAL_NOUNS = r"rippen?|(?:hals|brust|lenden|sakral)?wirbel\w*"


def compile_alternatives(table: dict[str, _T]) -> list[tuple[re.Pattern[str], _T]]:
    """Whole-word, case-insensitive patterns, the longest first (so "lower lobes of the
    lungs" wins over "lungs", "Nebenniere" over "Niere")."""
    return [(re.compile(rf"\b(?:{p})\b", re.IGNORECASE), v)
            for p, v in sorted(table.items(), key=lambda kv: -len(kv[0]))]


def alternatives(pattern: str) -> list[str]:
    """A pattern's top-level alternatives: a regex alternation takes the first that matches,
    not the longest ("upper lobe|upper lobe of the left lung"), so they are tried apart."""
    out, depth, start, escaped = [], 0, 0, False
    for i, ch in enumerate(pattern):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
    return [*out, pattern[start:]]


# --- how questions name things ---------------------------------------------------------------

_DE_NAMES = {base: name for base, (name, *_rest) in DE_WORDS.items()} | {"kidney_cyst": "Nierenzyste"}
_DE_GENDER = {base: gender for base, (_n, gender, *_rest) in DE_WORDS.items()} | {"kidney_cyst": "f"}
_DE_ARTICLE = {("nom", "f"): "die", ("nom", "m"): "der", ("nom", "n"): "das",
               ("dat", "f"): "der", ("dat", "m"): "dem", ("dat", "n"): "dem",
               ("acc", "f"): "die", ("acc", "m"): "den", ("acc", "n"): "das"}
_DE_ADJ = {("nom", "f"): "e", ("nom", "m"): "e", ("nom", "n"): "e",
           ("dat", "f"): "en", ("dat", "m"): "en", ("dat", "n"): "en",
           ("acc", "f"): "e", ("acc", "m"): "en", ("acc", "n"): "e"}


def _de_noun(base: str, case: str, gender: str) -> str:
    """The German name, its leading adjectives declined ("untere Hohlvene" -> "unteren ...")."""
    if m := _VERTEBRA.fullmatch(base):
        return f"Wirbelkörper {m[1]}{m[2]}"
    words = _DE_NAMES.get(base, display_name(base)).split(" ")
    for i, word in enumerate(words[:-1]):
        if not (word.islower() and word.endswith("e")):
            break
        words[i] = word[:-1] + _DE_ADJ[case, gender]
    return " ".join(words)


def name(label: str, language: str, case: str = "nom") -> str:
    """A structure as a question names it, with its article: "the left kidney",
    "die linke Niere" / (dative) "der linken Niere"; ``case`` "zu" gives "zur linken Niere"."""
    if case == "zu":
        article, rest = name(label, language, "dat").split(" ", 1)
        return {"der": "zur", "dem": "zum"}[article] + " " + rest
    if language != "de":
        return f"the {display_name(label)}"
    base, side, level = parse_name(label)
    gender = "m" if _VERTEBRA.fullmatch(base) else _DE_GENDER.get(base, "f")
    words = [_DE_ARTICLE[case, gender]]
    if level is not None:
        words.append(f"{_DE_ORDINAL_NAMES[level - 1]}{_DE_ADJ[case, gender]}")
    if side:
        words.append(f"{'link' if side == 'left' else 'recht'}{_DE_ADJ[case, gender]}")
    return " ".join([*words, _de_noun(base, case, gender)])


@cache
def _keyword_tables() -> list[tuple[list, list]]:
    return [(compile_alternatives(STRUCTURES[lang]), compile_alternatives(SIDE_FREE[lang])) for lang in STRUCTURES]


def label_of(entry: Entry, side: str | None) -> str:
    """The label name a structure word stands for with a side (None: unsided or both)."""
    side = ONE_SIDED.get(entry.base, side) if side in (None, ONE_SIDED.get(entry.base)) else side
    if entry.base == RIB and entry.level is not None:
        return f"rib_{side}_{entry.level}" if side in ("left", "right") else f"rib_{entry.level}"
    return f"{entry.base}_{side}" if side in ("left", "right") else entry.base


def canonical_keyword(word: str) -> str:
    """A grounded keyword as a label name when the lexicon knows it ("Leber", "hepatic",
    "the liver" -> "liver"; "linke Niere" -> "kidney_left"), else lower-cased and trimmed:
    what keyword matching compares offline."""
    text = " ".join(word.lower().split())
    best: tuple[int, Entry, re.Match[str]] | None = None
    sides: list = []
    for structures, free in _keyword_tables():
        for pattern, entry in structures:
            m = pattern.search(text)
            if m and (best is None or m.end() - m.start() > best[0]):
                best, sides = (m.end() - m.start(), entry, m), free
    if best is None:
        return text
    _, entry, m = best
    side = entry.side or (side_word(m["side"]) if "side" in m.re.groupindex and m["side"] else None)
    if side is None and (entry.base in PAIRED or entry.base in ONE_SIDED):
        side = next((v for p, v in sides if p.search(text)), None)
    return label_of(entry, side)
