"""Label id -> structure name, and one canonical spelling per structure.

Names come from a JSON table, else the label table TotalSegmentator embeds in its NIfTI
header, else ``fallback_name`` ("label_<id>"). Questions compare names across datasets, so
every spelling is mapped to TotalSegmentator's vocabulary (the most widely used public
one): lower snake_case, side as the last token (``kidney_right``, ``lung_upper_lobe_left``),
except TotalSegmentator's own exceptions (``rib_left_7``, ``vertebrae_L1``,
``left_coronary_cusp``), which are kept verbatim. Unknown names become lower snake_case.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib

from voxqa.errors import BuildError

#: Other spellings of a structure (side removed; it is re-attached after the lookup).
ALIASES = {
    "hepar": "liver",
    "lien": "spleen",
    "gall_bladder": "gallbladder",
    "bladder": "urinary_bladder",
    "oesophagus": "esophagus",
    "ivc": "inferior_vena_cava",
    "svc": "superior_vena_cava",
    "small_intestine": "small_bowel",
    "large_intestine": "colon",
    "large_bowel": "colon",
    "adrenal": "adrenal_gland",
    "suprarenal_gland": "adrenal_gland",
    "thyroid": "thyroid_gland",
    "clavicle": "clavicula",
    "upper_lobe": "lung_upper_lobe",
    "middle_lobe": "lung_middle_lobe",
    "lower_lobe": "lung_lower_lobe",
}
#: TotalSegmentator names that put the side first; all others put it last.
SIDE_FIRST = frozenset({
    "left_coronary_cusp", "right_coronary_cusp", "left_ventricular_outflow_tract",
    "left_maxillary_sinus", "right_maxillary_sinus", "left_inferior_alveolar_canal",
    "right_inferior_alveolar_canal", "left_mandibular_incisive_canal_fdi103",
    "right_mandibular_incisive_canal_fdi104",
})
#: Unpaired structures on or straddling the sagittal midplane: "is it on the patient's left
#: or right?" has no clean answer (aorta and IVC run within ~2 cm of the midline; colon,
#: small bowel and pancreas cross it). Relative questions between structures stay valid.
#: Names starting with "vertebrae" are midline too.
MIDLINE = frozenset({
    "aorta", "inferior_vena_cava", "esophagus", "trachea", "spinal_cord", "intervertebral_discs",
    "sacrum", "sternum", "costal_cartilages", "spine", "cervical_spine", "thoracic_spine",
    "lumbar_spine", "urinary_bladder", "prostate", "thyroid_gland", "pancreas", "colon",
    "small_bowel", "portal_vein_and_splenic_vein", "brain", "brainstem", "skull",
})
#: TotalSegmentator's ``total`` task (CT, v2: 117 classes), label id ``i + 1`` -> name, as its
#: ``map_to_binary.class_map["total"]`` and the label table in its NIfTI header list them.
TOTALSEG_CT: tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
    "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea",
    "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate", "kidney_cyst_left",
    "kidney_cyst_right", "sacrum", "vertebrae_S1", *(f"vertebrae_L{n}" for n in range(5, 0, -1)),
    *(f"vertebrae_T{n}" for n in range(12, 0, -1)), *(f"vertebrae_C{n}" for n in range(7, 0, -1)),
    "heart", "aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
    "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
    "brachiocephalic_vein_left", "brachiocephalic_vein_right", "atrial_appendage_left", "superior_vena_cava",
    "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left", "iliac_artery_right",
    "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right", "scapula_left", "scapula_right",
    "clavicula_left", "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "spinal_cord",
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",
    "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left",
    "iliopsoas_right", "brain", "skull", *(f"rib_left_{n}" for n in range(1, 13)),
    *(f"rib_right_{n}" for n in range(1, 13)), "sternum", "costal_cartilages",
)
#: TotalSegmentator's ``total_mr`` task (MR: 50 classes), label id ``i + 1`` -> name.
TOTALSEG_MR: tuple[str, ...] = (
    "spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
    "adrenal_gland_right", "adrenal_gland_left", "lung_left", "lung_right", "esophagus", "small_bowel",
    "duodenum", "colon", "urinary_bladder", "prostate", "sacrum", "vertebrae", "intervertebral_discs",
    "spinal_cord", "heart", "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein", "iliac_artery_left",
    "iliac_artery_right", "iliac_vena_left", "iliac_vena_right", "humerus_left", "humerus_right", "scapula_left",
    "scapula_right", "clavicula_left", "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right",
    "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left", "gluteus_medius_right",
    "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left", "autochthon_right", "iliopsoas_left",
    "iliopsoas_right", "brain",
)
#: Spine segments a report names as a whole ("lumbar spine", "LWS"): their vertebrae.
SPINE_SEGMENTS = {"cervical_spine": "C", "thoracic_spine": "T", "lumbar_spine": "L"}
_SIDES = {"left": "left", "l": "left", "lt": "left", "right": "right", "r": "right", "rt": "right"}
_SWAP = {"left": "right", "right": "left"}
_VERTEBRA = re.compile(r"vertebrae?_([clts])_?(\d{1,2})|([clts])_?(\d{1,2})_vertebrae?")
_RIB = re.compile(r"rib_(\d{1,2})_(left|right)")
_RIB_CANONICAL = re.compile(r"rib_(left|right)_(\d{1,2})")


def fallback_name(label_id: int) -> str:
    """Name of a label no table names."""
    return f"label_{label_id}"


def canonical_name(name: str) -> str:
    """One spelling per structure: "Kidney R", "right kidney" -> "kidney_right"."""
    s = re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
    if m := _VERTEBRA.fullmatch(s):
        level, number = (m[1], m[2]) if m[1] else (m[3], m[4])
        return f"vertebrae_{level.upper()}{number}"
    if s in SIDE_FIRST or not s:
        return s
    tokens = s.split("_")
    side = None
    if len(tokens) > 1 and tokens[-1] in _SIDES:
        side = _SIDES[tokens.pop()]
    elif len(tokens) > 1 and tokens[0] in _SIDES:
        side = _SIDES[tokens.pop(0)]
    base = "_".join(tokens)
    base = ALIASES.get(base, base)
    s = f"{base}_{side}" if side else base
    if m := _RIB.fullmatch(s):
        return f"rib_{m[2]}_{m[1]}"
    return s


def side_of(name: str) -> str | None:
    """"left"/"right" for a lateral structure's name, None for unpaired ones."""
    tokens = set(canonical_name(name).split("_"))
    sides = tokens & {"left", "right"}
    return sides.pop() if len(sides) == 1 else None


def parse_name(name: str) -> tuple[str, str | None, int | None]:
    """(base, side, rib number) of a canonical name: "kidney_left" -> ("kidney", "left", None),
    "rib_right_7" -> ("rib", "right", 7), "vertebrae_L1" -> ("vertebrae_L1", None, None)."""
    c = canonical_name(name)
    if m := _RIB_CANONICAL.fullmatch(c):
        return "rib", m[1], int(m[2])
    tokens = c.split("_")
    if len(tokens) > 1 and tokens[-1] in ("left", "right") and c not in SIDE_FIRST:
        return "_".join(tokens[:-1]), tokens[-1], None
    return c, None, None


def pair_of(name: str) -> str | None:
    """The name of the other side's counterpart (left <-> right), None if not lateral.

    The counterpart need not exist in a given label map; callers check.
    """
    if side_of(name) is None:
        return None
    return "_".join(_SWAP.get(t, t) for t in canonical_name(name).split("_"))


def midline(name: str) -> bool:
    """True if asking the structure's side of the body is ill-posed (see ``MIDLINE``)."""
    c = canonical_name(name)
    return side_of(c) is None and (c in MIDLINE or c.startswith("vertebrae"))


#: Words that make a label a lesion (whole words of the name: ``masseter`` is not a ``mass``).
_LESION = re.compile(r"(?:^|_)(lesions?|tumou?rs?|nodules?|metastas[ie]s|mets?|cysts?|masse?s?)(?:_|$)")
_ORDINAL = {1: "1st", 2: "2nd", 3: "3rd", 21: "21st", 22: "22nd", 23: "23rd"}


def is_lesion(name: str) -> bool:
    """True if a label names a lesion (tumour, nodule, metastasis, cyst, mass), by whole word."""
    return _LESION.search(canonical_name(name)) is not None


def display_name(name: str) -> str:
    """How a question names a structure: "kidney_left" -> "left kidney", "rib_left_11" ->
    "11th left rib", "vertebrae_L1" -> "L1 vertebra", "liver_lesion" -> "liver lesion".

    Questions must read like a radiologist's, and a snake_case label is a tell that the text
    was generated from the label map.
    """
    c = canonical_name(name)
    if m := re.fullmatch(r"vertebrae_([CTLS]\d{1,2})", c):
        return f"{m[1]} vertebra"
    if m := re.fullmatch(r"rib_(left|right)_(\d{1,2})", c):
        n = int(m[2])
        return f"{_ORDINAL.get(n, f'{n}th')} {m[1]} rib"
    tokens = c.split("_")
    side = tokens.pop() if len(tokens) > 1 and tokens[-1] in ("left", "right") else None
    if side is None and len(tokens) > 1 and tokens[0] in ("left", "right"):
        side = tokens.pop(0)
    words = " ".join(tokens)
    return f"{side} {words}" if side else words


def read_json_names(path: Path) -> dict[int, str]:
    """Label table from JSON: ``{"1": "liver", ...}`` or dcmqi's segmentation metadata.

    dcmqi metadata (``segmentAttributes``: lists of ``{"labelID", "SegmentLabel"}``) is
    accepted because it is how dcmqi/Slicer name the ids of a label map.
    """
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildError(f"{path}: cannot read label names ({exc})") from exc
    except RecursionError:  # json recurses per level: [[[[... 100,000 deep
        raise BuildError(f"{path}: cannot read label names (JSON nested too deeply)") from None
    if isinstance(table, dict) and "segmentAttributes" in table:
        try:
            table = {s["labelID"]: s["SegmentLabel"] for group in table["segmentAttributes"] for s in group}
        except (TypeError, KeyError) as exc:
            raise BuildError(f"{path}: malformed dcmqi segmentAttributes ({exc!r})") from exc
    if not isinstance(table, dict):
        raise BuildError(f"{path}: expected a JSON object {{label id: name}}, got {type(table).__name__}")
    names: dict[int, str] = {}
    for key, name in table.items():
        label_id = _label_id(key)
        if label_id is None or not isinstance(name, str) or not name.strip():
            raise BuildError(f"{path}: bad entry {key!r}: {name!r} (need a non-negative integer id "
                             "and a non-empty name)")
        names[label_id] = name.strip()
    return names


def _label_id(key: object) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key if key >= 0 else None
    if isinstance(key, str) and key.strip().isdigit():
        return int(key)
    return None


def header_label_names(path: Path) -> dict[int, str]:
    """The Caret XML ``<LabelTable>`` in a NIfTI header extension (TotalSegmentator), or {}."""
    for ext in nib.load(path).header.extensions:
        content = ext.get_content()
        if not isinstance(content, bytes) or b"<LabelTable" not in content:
            continue
        try:
            root = ET.fromstring(content.strip(b"\x00 \t\r\n"))
            return {int(lab.attrib["Key"]): (lab.text or "").strip() for lab in root.iter("Label")}
        except (ET.ParseError, KeyError, ValueError) as exc:
            raise BuildError(f"{path}: malformed label table in the NIfTI header extension ({exc!r})") from exc
    return {}
