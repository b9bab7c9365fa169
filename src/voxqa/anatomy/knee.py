"""The knee's MOAKS vocabulary: subregions, features with their scales, region names as
written, and 3DReasonKnee's ``MOAKS_scores`` keys.

Its own module because the knee source reads inputs with it while the grading family, the
grade answer type, the phantom and the 3DReasonKnee importer ask questions and write targets
with it: none of them should import a source to know what a region is called.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BONE_REGIONS = (
    "patella_medial", "patella_lateral",
    "femur_trochlea_medial", "femur_trochlea_lateral", "femur_central_medial",
    "femur_central_lateral", "femur_posterior_medial", "femur_posterior_lateral",
    "tibia_anterior_medial", "tibia_central_medial", "tibia_posterior_medial",
    "tibia_anterior_lateral", "tibia_central_lateral", "tibia_posterior_lateral",
    "tibia_subspinous",
)
MENISCI = ("meniscus_medial", "meniscus_lateral")
REGIONS = BONE_REGIONS + MENISCI + ("acl", "pcl", "patellar_tendon")
JOINT = "joint"  # the whole knee: effusion, Hoffa, bursae, loose bodies (no box)
#: Other spellings (after lower-casing and joining words with "_"), beside any word order.
ABBREVIATIONS = {
    "mfc": "femur_central_medial", "lfc": "femur_central_lateral",
    "mft": "femur_trochlea_medial", "lft": "femur_trochlea_lateral",
    "mfp": "femur_posterior_medial", "lfp": "femur_posterior_lateral",
    "mta": "tibia_anterior_medial", "mtc": "tibia_central_medial", "mtp": "tibia_posterior_medial",
    "lta": "tibia_anterior_lateral", "ltc": "tibia_central_lateral", "ltp": "tibia_posterior_lateral",
    "ss": "tibia_subspinous", "subspinous": "tibia_subspinous",
    "pm": "patella_medial", "pl": "patella_lateral",
    "mm": "meniscus_medial", "lm": "meniscus_lateral",
    "anterior_cruciate_ligament": "acl", "posterior_cruciate_ligament": "pcl",
    "patella_tendon": "patellar_tendon", "knee": JOINT, "whole_knee": JOINT,
}
#: Word spellings read as the vocabulary's words.
_WORDS = {"trochlear": "trochlea", "femoral": "femur", "tibial": "tibia", "menisci": "meniscus",
          "med": "medial", "lat": "lateral", "ant": "anterior", "post": "posterior",
          "cent": "central"}
LESION_KINDS = ("bml", "cartilage", "osteophyte")
SIDES = {"right": "right", "r": "right", "left": "left", "l": "left"}


@dataclass(frozen=True)
class Feature:
    """One MOAKS feature: its scale, the regions graded, and 3DReasonKnee's JSON key for it.

    ``group`` and ``component`` place a grade in ``{"MOAKS_scores": {"<region words> <group>":
    {"<component>": grade}}}``; ``component`` None is a bare grade (3DReasonKnee Q44/45).
    ``lesion`` is the lesion-mask kind whose frames the trace inspects; ``presence`` the words
    of the yes/no "any ... in the region" question this feature's grade > 0 answers.
    """

    name: str
    scale: tuple[int, ...]
    regions: tuple[str, ...]
    criterion: str
    grades: tuple[str, ...]
    group: str
    component: str | None = "grade"
    lesion: str | None = None
    presence: str | None = None

    @property
    def binary(self) -> bool:
        return self.scale == (0, 1)


_PCT33 = ("None", "<33% of subregion", "33-66% of subregion", ">66% of subregion")
_EXTRUSION = ("below 2 mm", "2 to 2.9 mm", "3 to 4.9 mm", "5 mm or more")
_MORPHOLOGY = ("Normal meniscus", "Signal abnormality (not a tear)", "Radial tear", "Horizontal tear",
               "Vertical tear", "Complex tear", "Partial maceration", "Progressive partial maceration",
               "Complete maceration")


def _binary(name: str, regions: tuple[str, ...], criterion: str, group: str) -> Feature:
    return Feature(name, (0, 1), regions, criterion, ("Absent", "Present"), group, "presence")


_FEATURE_LIST = (
    Feature("bml_size", (0, 1, 2, 3), BONE_REGIONS, "size of bone marrow lesions (including cysts)",
            _PCT33, "BML", "Size of BML (including cyst)", "bml", "any bone marrow lesion"),
    Feature("bml_number", (0, 1, 2, 3), BONE_REGIONS, "number of bone marrow lesions",
            ("None", "1 BML", "2 BMLs", "3 or more BMLs"), "BML", "Number of BML within subregion", "bml"),
    Feature("bml_percent", (0, 1, 2, 3), BONE_REGIONS, "percent of the lesion that is BML (excluding cysts)",
            ("None", "<33%", "33-66%", ">66%"), "BML", "% of lesion that is BML (excluding cyst)", "bml"),
    Feature("cartilage_size", (0, 1, 2, 3), BONE_REGIONS, "size of cartilage loss (any depth)",
            ("None", "<10% of surface area", "10-75% of surface area", ">75% of surface area"),
            "cartilage lesion", "Size of lesion", "cartilage", "any cartilage loss"),
    Feature("cartilage_full_thickness", (0, 1, 2, 3), BONE_REGIONS, "share of full-thickness cartilage loss",
            ("No full-thickness loss", "<10% of the region", "10-75% of the region", ">75% of the region"),
            "cartilage lesion", "Depth of lesion", "cartilage"),
    Feature("osteophyte", (0, 1, 2, 3), BONE_REGIONS, "osteophyte size (protuberance of the largest)",
            ("None", "Small", "Medium", "Large"), "osteophyte", "grade", "osteophyte", "any osteophyte"),
    Feature("hoffa_synovitis", (0, 1, 2, 3), (JOINT,), "Hoffa-synovitis (hyperintensity in Hoffa's fat pad)",
            ("Normal", "Mild", "Moderate", "Severe"), "Hoffa-Synovitis"),
    Feature("effusion_synovitis", (0, 1, 2, 3), (JOINT,), "effusion-synovitis (fluid in the joint cavity)",
            ("Physiologic amount of fluid", "Small: fluid continuous in the retropatellar space",
             "Medium: slight convexity of the suprapatellar bursa", "Large: capsular distension"),
            "effusion-synovitis"),
    Feature("meniscal_extrusion_medial", (0, 1, 2, 3), MENISCI, "medial meniscal extrusion",
            _EXTRUSION, "medial extrusion", None),
    Feature("meniscal_extrusion_lateral", (0, 1, 2, 3), MENISCI, "lateral meniscal extrusion",
            _EXTRUSION, "lateral extrusion", None),
    Feature("meniscal_extrusion_anterior", (0, 1, 2, 3), MENISCI, "anterior meniscal extrusion",
            _EXTRUSION, "anterior extrusion", None),
    Feature("meniscal_morphology", tuple(range(9)), MENISCI, "meniscal morphology", _MORPHOLOGY,
            "morphology", "morphology"),
    _binary("meniscal_cyst", MENISCI, "a meniscal cyst", "cyst"),
    _binary("root_tear", MENISCI, "a meniscal root tear", "root tear"),
    _binary("acl_tear", ("acl",), "a complete ACL tear", "tear"),
    _binary("pcl_tear", ("pcl",), "a complete PCL tear", "tear"),
    _binary("patellar_tendon_signal", ("patellar_tendon",), "patellar tendon signal abnormality", "signal"),
    _binary("bursitis", (JOINT,), "bursitis", "bursitis"),
    _binary("popliteal_cyst", (JOINT,), "a popliteal cyst", "popliteal cyst"),
    _binary("loose_bodies", (JOINT,), "loose bodies", "loose bodies"),
)
FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURE_LIST}


def name_key(name: str) -> str:
    """A written name lower-cased with its words joined by "_" ("Femur-Central " -> femur_central)."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


_BY_WORDS = {frozenset(r.split("_")): r for r in REGIONS + (JOINT,)}


def region_name(name: str) -> str | None:
    """The canonical region of a written name (any word order, abbreviations), else None."""
    key = name_key(name)
    if key in ABBREVIATIONS:
        return ABBREVIATIONS[key]
    return _BY_WORDS.get(frozenset(_WORDS.get(w, w) for w in key.split("_")))


def label_name(name: str) -> str | None:
    """A label map's name as a region (``femur_central_medial``) or a lesion mask
    (``bml_femur_central_medial``), canonical; None when it is neither."""
    key = name_key(name)
    kind = next((k for k in LESION_KINDS if key.startswith(k + "_")), None)
    if kind is not None:
        region = region_name(key[len(kind) + 1:])
        return f"{kind}_{region}" if region in BONE_REGIONS else None
    region = region_name(key)
    return region if region in REGIONS else None


def display(region: str) -> str:
    """3DReasonKnee's words for a region: bone, side, then the rest ("femur medial central");
    "medial meniscus"; the ligaments and tendon by their names."""
    words = region.split("_")
    if words[0] in ("patella", "femur", "tibia"):
        side = [w for w in words[1:] if w in ("medial", "lateral")]
        return " ".join([words[0], *side, *(w for w in words[1:] if w not in side)])
    return {"meniscus_medial": "medial meniscus", "meniscus_lateral": "lateral meniscus", "acl": "ACL",
            "pcl": "PCL", "patellar_tendon": "patellar tendon", JOINT: "knee joint"}[region]


def moaks_key(region: str, feature: str) -> tuple[str, str | None]:
    """(group key, component key) of a grade in 3DReasonKnee's ``MOAKS_scores`` object."""
    f = FEATURES[feature]
    group = f.group if region == JOINT else f"{display(region)} {f.group}"
    return group, f.component


def moaks_scores(region: str, feature: str, grade: int) -> dict:
    """One grade as 3DReasonKnee's structured target ``{"MOAKS_scores": {...}}``."""
    group, component = moaks_key(region, feature)
    return {"MOAKS_scores": {group: grade if component is None else {component: grade}}}
