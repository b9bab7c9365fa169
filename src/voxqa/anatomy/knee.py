"""The knee's MOAKS vocabulary: regions, features with their scales and legends, region names
as written, and where 3DReasonKnee's released question files ask each (feature, region).

Its own module because the knee source reads inputs with it while the grading family, the
grade answer type, the phantom and the 3DReasonKnee importer ask questions and write targets
with it: none of them should import a source to know what a region is called.

The feature table follows MOAKS (Hunter et al. 2011) as 3DReasonKnee's 69 released templates
ask it (github.com/rajpurkarlab/3DReasonKnee @ bcc32ba, ``data/question_files/
questions_nobbox_{zeroshot,guided}.json``), one to one: every graded component of every
template is one (feature, region) here, with the template number and the key path of its
grade in the template's answer JSON (``Released``). BMLs are graded in 15 subregions (Q1-15),
cartilage in 14 (Q16-29, no subspinous), osteophytes at 12 margin sites (Q30-41), extrusion
medial and anterior for the medial meniscus, lateral and anterior for the lateral (Q44-47),
morphology per horn and body (Q48-53), and Q54-69's findings each once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: BML subregions in the released order (Q1-15).
BONE_REGIONS = (
    "patella_medial", "patella_lateral",
    "femur_trochlea_medial", "femur_central_medial", "femur_posterior_medial",
    "femur_trochlea_lateral", "femur_central_lateral", "femur_posterior_lateral",
    "tibia_anterior_medial", "tibia_central_medial", "tibia_posterior_medial",
    "tibia_anterior_lateral", "tibia_central_lateral", "tibia_posterior_lateral",
    "tibia_subspinous",
)
#: Cartilage subregions (Q16-29): MOAKS grades no cartilage in the subspinous subregion.
CARTILAGE_REGIONS = BONE_REGIONS[:14]
#: Osteophyte margin sites in the released order (Q30-41): MOAKS's 12 sites.
OSTEOPHYTE_SITES = (
    "patella_superior", "patella_inferior", "patella_medial", "patella_lateral",
    "femur_anterior_medial", "femur_central_medial", "femur_posterior_medial",
    "femur_anterior_lateral", "femur_central_lateral", "femur_posterior_lateral",
    "tibia_medial", "tibia_lateral",
)
MENISCI = ("meniscus_medial", "meniscus_lateral")
#: Meniscal horns and bodies (morphology, Q48-53), in the released order.
MENISCAL_PARTS = (
    "meniscus_medial_anterior", "meniscus_medial_body", "meniscus_medial_posterior",
    "meniscus_lateral_anterior", "meniscus_lateral_body", "meniscus_lateral_posterior",
)
LIGAMENTS = ("acl", "pcl", "patellar_tendon")
REGIONS = tuple(dict.fromkeys(BONE_REGIONS + OSTEOPHYTE_SITES + MENISCI + MENISCAL_PARTS + LIGAMENTS))
JOINT = "joint"  # the whole knee: effusion, Hoffa, bursae, cysts, loose bodies (the whole volume)
#: Regions a label map or boxes.csv need not name: located by the union of their parts that it
#: names (a meniscus by its horns and body, a tibial osteophyte site by the plateau's three
#: subregions, the femoral anterior sites by the trochlea, the patella's superior and inferior
#: margin sites by the whole patella).
COMPOSITES: dict[str, tuple[str, ...]] = {
    "meniscus_medial": MENISCAL_PARTS[:3],
    "meniscus_lateral": MENISCAL_PARTS[3:],
    "tibia_medial": ("tibia_anterior_medial", "tibia_central_medial", "tibia_posterior_medial"),
    "tibia_lateral": ("tibia_anterior_lateral", "tibia_central_lateral", "tibia_posterior_lateral"),
    "femur_anterior_medial": ("femur_trochlea_medial",),
    "femur_anterior_lateral": ("femur_trochlea_lateral",),
    "patella_superior": ("patella_medial", "patella_lateral"),
    "patella_inferior": ("patella_medial", "patella_lateral"),
}
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
    # the released tear-location legend (Q54/55): MMA = Medial Meniscus Anterior, ...
    "mma": "meniscus_medial_anterior", "mmb": "meniscus_medial_body", "mmp": "meniscus_medial_posterior",
    "lma": "meniscus_lateral_anterior", "lmb": "meniscus_lateral_body", "lmp": "meniscus_lateral_posterior",
    "anterior_cruciate_ligament": "acl", "posterior_cruciate_ligament": "pcl",
    "patella_tendon": "patellar_tendon", "knee": JOINT, "whole_knee": JOINT,
}
#: Word spellings read as the vocabulary's words.
_WORDS = {"trochlear": "trochlea", "femoral": "femur", "tibial": "tibia", "menisci": "meniscus",
          "med": "medial", "lat": "lateral", "ant": "anterior", "post": "posterior",
          "cent": "central", "sup": "superior", "inf": "inferior"}
LESION_KINDS = ("bml", "cartilage", "osteophyte")
SIDES = {"right": "right", "r": "right", "left": "left", "l": "left"}
#: The wrappers of the released answer JSON (Q45/51/52 write "MOAKS_grade", the rest "MOAKS_scores").
MOAKS_WRAPPERS = ("MOAKS_scores", "MOAKS_grade")


@dataclass(frozen=True)
class Released:
    """Where 3DReasonKnee's released question files ask one (feature, region): the template
    number and the keys from the top of the template's answer JSON to the grade."""

    template: int
    path: tuple[str, ...]


@dataclass(frozen=True)
class Feature:
    """One MOAKS feature: its scale and legend, and the regions graded with their released
    templates.

    ``lesion`` is the lesion-mask kind whose frames the trace inspects; ``presence`` the words
    of the yes/no "any ... in the region" question this feature's grade > 0 answers;
    ``nominal`` codes (tear location) are choices, never ordered grades; ``guidance`` is the
    sentence 3DReasonKnee's guided question file adds to the feature's templates; ``ask`` a
    question other than the usual "Is there ...?" (``{criterion}``, ``{in_where}``) or the
    nominal feature's (``{where}``: the region).
    """

    name: str
    scale: tuple[int, ...]
    criterion: str
    grades: tuple[str, ...]
    templates: tuple[tuple[str, Released], ...]
    guidance: str
    lesion: str | None = None
    presence: str | None = None
    nominal: bool = False
    ask: str | None = None

    @property
    def binary(self) -> bool:
        return self.scale == (0, 1) and not self.nominal

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(region for region, _ in self.templates)

    def released(self, region: str) -> Released:
        return dict(self.templates)[region]

    def legend(self, region: str) -> tuple[str, ...]:
        """The meaning of each grade; the tear-location codes name the region's meniscus."""
        side = "Medial" if "medial" in region else "Lateral"
        return tuple(g.format(m=side[0], side=side) for g in self.grades)


_PCT33 = ("None", "<33% of subregion", "33-66% of subregion", ">66% of subregion")
_EXTRUSION = ("below 2 mm", "2 to 2.9 mm", "3 to 4.9 mm", "5 mm or more")
_MORPHOLOGY = ("Normal meniscus", "Signal abnormality (not a tear)", "Radial tear", "Horizontal tear",
               "Vertical tear", "Complex tear", "Partial maceration", "Progressive partial maceration",
               "Complete maceration")
#: Morphology grades that are tears (MOAKS: radial, horizontal, vertical, complex).
TEAR_GRADES = (2, 3, 4, 5)
#: Progressive partial maceration is graded only at follow-up (MOAKS; the released legend says so).
FOLLOW_UP_ONLY = {"meniscal_morphology": (7,)}


def _words(region: str) -> str:
    """3DReasonKnee's words for a region: bone, side, then the rest ("femur medial central");
    "medial meniscus", "medial meniscus anterior"; the ligaments and tendon by their names."""
    words = region.split("_")
    if words[0] in ("patella", "femur", "tibia"):
        side = [w for w in words[1:] if w in ("medial", "lateral")]
        return " ".join([words[0], *side, *(w for w in words[1:] if w not in side)])
    if words[0] == "meniscus":
        return " ".join([words[1], "meniscus", *words[2:]])
    return {"acl": "ACL", "pcl": "PCL", "patellar_tendon": "patellar tendon", JOINT: "knee joint"}[region]


def display(region: str) -> str:
    """The region in 3DReasonKnee's words ("femur medial central", "medial meniscus body")."""
    return _words(region)


def _moaks(first: int, regions: tuple[str, ...], group: str, component: str | None,
           bare: tuple[int, ...] = (), other_wrapper: tuple[int, ...] = ()) -> tuple[tuple[str, Released], ...]:
    """Consecutive templates from ``first``, one per region: ``{"MOAKS_scores": {"<region
    words> <group>": {component: g}}}`` (``bare``: no wrapper, as Q33/35/37; ``other_wrapper``:
    ``MOAKS_grade``, as Q45/51/52)."""
    out = []
    for n, region in enumerate(regions):
        q = first + n
        key = f"{_words(region)} {group}"
        path = () if q in bare else ("MOAKS_grade" if q in other_wrapper else "MOAKS_scores",)
        out.append((region, Released(q, path + (key,) + ((component,) if component else ()))))
    return tuple(out)


def _one(region: str, template: int, *path: str) -> tuple[tuple[str, Released], ...]:
    return ((region, Released(template, path)),)


_BML = "BMLs appear as ill-defined areas of high signal intensity in the subchondral bone marrow, and should be differentiated from normal vascular streaks."
_CARTILAGE = ("The cartilage looks gray in the DESS image. It covers the articular surfaces of the bones. I need "
              "to see whether the patient's cartilage has a smooth surface, evenly distributed thickness. If "
              "there is an abrupt thinning of cartilage, disruption of contour, it implies a cartilage lesion.")
_EXTRUDES = ("The extrusion is measured by the maximum distance the meniscus is protruding from the margin of "
             "the tibial articular surface. It is measured in the {view} view.")
_MENISCUS = ("The meniscus is triangular shaped, with meniscal fibrocartilage showing uniformly "
             "low–to–intermediate signal structure in DESS MRI. Abnormal morphology includes signal changes "
             "within the meniscus, tears of different patterns, or tissue loss/degeneration (maceration).")
_CYST = ("A meniscal cyst appears as a fluid-filled, well-circumscribed lesion adjacent to the meniscus, showing "
         "high signal intensity on DESS MRI.")
_ACL = ("The ACL is a band-like structure that appears as a continuous, low-signal intensity structure running "
        "diagonally from the posterior femur to the anterior tibia in the intercondylar notch.")
_PCL = ("The PCL is a band-like structure that appears as a continuous, low-signal intensity structure running "
        "diagonally from the anterior femur to the posterior tibia in the intercondylar notch, with a "
        "characteristic reverse S-shape.")
_ABSENT = ("Absent", "Present")
_INSERTION = ("No BML or cyst at its insertion or origin", "BML or cyst at the site of insertion or origin")
_ACL_KEYS = ("Complete Tear", "Associated with BML/cyst at site of insertion or origin", "ACL Repair")


def _presence(name: str, template: int, criterion: str, guidance: str, ask: str | None = None) -> Feature:
    """Q63-69: ``{"<name>_presence": {"presence": 0|1}}`` about the whole knee."""
    return Feature(name, (0, 1), criterion, _ABSENT, _one(JOINT, template, f"{name}_presence", "presence"), guidance,
                   ask=ask)


def _meniscal(name: str, first: int, key: str, component: str, criterion: str, grades: tuple[str, ...],
              guidance: str, **kw: object) -> Feature:
    """Q54-59: ``{"<side>_meniscal_<key>": {component: code}}``, medial then lateral."""
    templates = tuple((m, Released(first + n, (f"{m.split('_')[1]}_meniscal_{key}", component)))
                      for n, m in enumerate(MENISCI))
    return Feature(name, (0, 1) if not kw.get("nominal") else (0, 1, 2, 3), criterion, grades, templates,
                   guidance, **kw)  # type: ignore[arg-type]


_FEATURE_LIST = (
    Feature("bml_size", (0, 1, 2, 3), "size of bone marrow lesions (including cysts)", _PCT33,
            _moaks(1, BONE_REGIONS, "BML", "Size of BML (including cyst)"), _BML, "bml", "any bone marrow lesion"),
    Feature("bml_number", (0, 1, 2, 3), "number of bone marrow lesions", ("None", "1 BML", "2 BMLs", "3 or more BMLs"),
            _moaks(1, BONE_REGIONS, "BML", "Number of BML within subregion"), _BML, "bml"),
    Feature("bml_percent", (0, 1, 2, 3), "percent of the lesion that is BML (excluding cysts)",
            ("None", "<33%", "33-66%", ">66%"),
            _moaks(1, BONE_REGIONS, "BML", "% of lesion that is BML (excluding cyst)"), _BML, "bml"),
    Feature("cartilage_size", (0, 1, 2, 3), "size of cartilage loss (any depth)",
            ("None", "<10% of surface area", "10-75% of surface area", ">75% of surface area"),
            _moaks(16, CARTILAGE_REGIONS, "cartilage lesion", "Size of lesion"), _CARTILAGE, "cartilage",
            "any cartilage loss"),
    Feature("cartilage_full_thickness", (0, 1, 2, 3), "share of full-thickness cartilage loss",
            ("No full-thickness loss", "<10% of the cartilage defect", "10-75% of the cartilage defect",
             ">75% of the cartilage defect"),
            _moaks(16, CARTILAGE_REGIONS, "cartilage lesion", "Depth of lesion"), _CARTILAGE, "cartilage"),
    Feature("osteophyte", (0, 1, 2, 3), "osteophyte size (protuberance of the largest)",
            ("None", "Small", "Medium", "Large"),
            _moaks(30, OSTEOPHYTE_SITES, "osteophyte", "grade", bare=(33, 35, 37)),
            "Osteophytes are bony outgrowths at joint margins.", "osteophyte", "any osteophyte"),
    Feature("hoffa_synovitis", (0, 1, 2, 3), "Hoffa-synovitis (hyperintensity in Hoffa's fat pad)",
            ("Normal", "Mild", "Moderate", "Severe"), _one(JOINT, 42, "MOAKS_scores", "Hoffa-Synovitis", "grade"),
            "Hoffa-synovitis refers to inflammation in Hoffa's fat pad (the infrapatellar fat pad), which appears "
            "as increased signal intensity (brightness) within the normally dark fat pad on MRI."),
    Feature("effusion_synovitis", (0, 1, 2, 3), "effusion-synovitis (fluid in the joint cavity)",
            ("Physiologic amount of fluid", "Small: fluid continuous in the retropatellar space",
             "Medium: slight convexity of the suprapatellar bursa", "Large: capsular distension"),
            _one(JOINT, 43, "MOAKS_scores", "effusion-synovitis", "grade"),
            "Effusion-synovitis represents abnormal fluid accumulation within the joint cavity, appearing as high "
            "signal intensity (bright) areas in the joint space where there would normally be minimal fluid."),
    Feature("meniscal_extrusion_anterior", (0, 1, 2, 3), "anterior meniscal extrusion", _EXTRUSION,
            _one("meniscus_medial", 44, "MOAKS_scores", "medial meniscus anterior extrusion")
            + _one("meniscus_lateral", 46, "MOAKS_scores", "lateral meniscus anterior extrusion", "grade"),
            _EXTRUDES.format(view="sagittal")),
    Feature("meniscal_extrusion_medial", (0, 1, 2, 3), "medial meniscal extrusion", _EXTRUSION,
            _one("meniscus_medial", 45, "MOAKS_grade", "medial meniscus medial extrusion"),
            _EXTRUDES.format(view="coronal")),
    Feature("meniscal_extrusion_lateral", (0, 1, 2, 3), "lateral meniscal extrusion", _EXTRUSION,
            _one("meniscus_lateral", 47, "MOAKS_scores", "lateral meniscus lateral extrusion", "grade"),
            _EXTRUDES.format(view="coronal")),
    Feature("meniscal_morphology", tuple(range(9)), "meniscal morphology", _MORPHOLOGY,
            _moaks(48, MENISCAL_PARTS, "morphology", "morphology", other_wrapper=(51, 52)), _MENISCUS),
    _meniscal("meniscal_cyst", 54, "cyst", "presence", "a meniscal cyst", ("No cyst", "Cyst"), _CYST),
    _meniscal("meniscal_tear_location", 54, "cyst", "tear_location", "the location of a meniscal tear",
              ("{m}MA ({side} Meniscus Anterior)", "{m}MB ({side} Meniscus Body)",
               "{m}MP ({side} Meniscus Posterior)", "No tear detected"), _CYST,
              nominal=True, ask="Where is {where} torn?"),
    _meniscal("meniscal_hypertrophy", 56, "hypertrophy", "presence", "meniscal hypertrophy",
              ("No hypertrophy", "Hypertrophy"),
              "Meniscal hypertrophy refers to abnormal enlargement or thickening of the meniscus beyond its normal "
              "dimensions, while maintaining its basic shape and signal characteristics."),
    _meniscal("root_tear", 58, "root_tear", "presence", "a meniscal root tear", ("No root tear", "Root tear"),
              "A meniscal root tear is a disruption of the meniscal attachment to the tibial plateau, which can "
              "appear as discontinuity, displacement, or abnormal signal at the meniscal root insertion site."),
    Feature("acl_tear", (0, 1), "a complete ACL tear", ("No complete tear", "Complete tear"),
            _one("acl", 60, "ACL", _ACL_KEYS[0]), _ACL),
    Feature("acl_insertion_lesion", (0, 1), "a BML or cyst at the ACL's insertion or origin", _INSERTION,
            _one("acl", 60, "ACL", _ACL_KEYS[1]), _ACL),
    Feature("acl_repair", (0, 1), "an ACL repair", ("No ACL repair", "ACL repair"),
            _one("acl", 60, "ACL", _ACL_KEYS[2]), _ACL),
    Feature("pcl_tear", (0, 1), "a complete PCL tear", ("No complete tear", "Complete tear"),
            _one("pcl", 61, "PCL", _ACL_KEYS[0]), _PCL),
    Feature("pcl_insertion_lesion", (0, 1), "a BML or cyst at the PCL's insertion or origin", _INSERTION,
            _one("pcl", 61, "PCL", _ACL_KEYS[1]), _PCL),
    Feature("patellar_tendon_signal", (0, 1), "patellar tendon signal abnormality",
            ("Normal signal", "Signal abnormality"), _one("patellar_tendon", 62, "Patellar_Tendon", "Signal Abnormality"),
            "The patellar tendon is a strong, fibrous band that appears as a continuous, low-signal intensity "
            "structure running diagonally from the medial femur to the tibial tuberosity."),
    _presence("pes_anserine_bursitis", 63, "pes anserine bursitis",
              "Pes anserine bursitis appears as fluid signal intensity (bright signal) between the pes anserine "
              "tendons and the proximal medial tibia."),
    _presence("iliotibial_band_signal", 64, "iliotibial band signal abnormality",
              "The iliotibial band normally appears as a low-signal structure along the lateral aspect of the knee; "
              "abnormal signal appears as increased signal intensity within or surrounding the band."),
    _presence("popliteal_cyst", 65, "a popliteal cyst",
              "A popliteal (Baker's) cyst appears as a fluid-filled structure with high signal intensity in the "
              "posteromedial aspect of the knee, typically between the medial head of the gastrocnemius and the "
              "semimembranosus tendon."),
    _presence("infrapatellar_bursitis", 66, "infrapatellar bursitis",
              "Infrapatellar bursitis appears as fluid accumulation (high signal intensity) in either the "
              "superficial bursa (between the skin and patellar tendon) or deep bursa (between the patellar tendon "
              "and tibia)."),
    _presence("prepatellar_bursitis", 67, "prepatellar bursitis",
              "Prepatellar bursitis appears as fluid accumulation (high signal intensity) in the bursa located "
              "between the anterior surface of the patella and the overlying skin."),
    _presence("ganglion_cyst", 68, "a ganglion cyst",
              "A ganglion cyst appears as a well-defined, fluid-filled structure (high signal intensity) that can "
              "occur anywhere around the knee joint."),
    _presence("loose_bodies", 69, "loose bodies",
              "Loose bodies are free-floating fragments within the joint space that can be cartilaginous, osseous, "
              "or mixed in composition, appearing as well-defined structures that may change position between "
              "images and can be of varying signal intensity.", ask="Are there {criterion}?"),
)
FEATURES: dict[str, Feature] = {f.name: f for f in _FEATURE_LIST}
#: Per lesion kind, the regions its mask may name (the regions its features are graded in).
LESION_REGIONS = {kind: tuple(dict.fromkeys(r for f in _FEATURE_LIST if f.lesion == kind for r in f.regions))
                  for kind in LESION_KINDS}
TEMPLATES = 69


def released_components() -> dict[int, list[tuple[str, str, tuple[str, ...]]]]:
    """Template number -> its (feature, region, key path) components, in table order."""
    out: dict[int, list[tuple[str, str, tuple[str, ...]]]] = {}
    for f in _FEATURE_LIST:
        for region, r in f.templates:
            out.setdefault(r.template, []).append((f.name, region, r.path))
    return dict(sorted(out.items()))


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
    (``bml_femur_central_medial``, of a region the kind is graded in), canonical; None when it
    is neither."""
    key = name_key(name)
    kind = next((k for k in LESION_KINDS if key.startswith(k + "_")), None)
    if kind is not None:
        region = region_name(key[len(kind) + 1:])
        return f"{kind}_{region}" if region in LESION_REGIONS[kind] else None
    region = region_name(key)
    return region if region in REGIONS else None


def where(region: str) -> str:
    """The region as a question names it: "the femur medial central subregion", "the patella
    superior margin", "the anterior horn of the medial meniscus", "the whole knee joint"."""
    if region == JOINT:
        return "the whole knee joint"
    if region in MENISCAL_PARTS:
        meniscus, part = region.rsplit("_", 1)
        return f"the {'body' if part == 'body' else part + ' horn'} of the {_words(meniscus)}"
    if region in BONE_REGIONS:
        return f"the {_words(region)} subregion"
    if region in OSTEOPHYTE_SITES:
        return f"the {_words(region)} margin"
    return f"the {_words(region)}"


def moaks_key(region: str, feature: str) -> tuple[str, str | None]:
    """(group key, component key) of a grade in its released answer JSON, the wrapper left
    out: ("femur medial central BML", "Number of BML within subregion"); a bare grade (Q44/45)
    has no component."""
    path = FEATURES[feature].released(region).path
    rest = path[1:] if path[0] in MOAKS_WRAPPERS else path
    return rest[0], rest[1] if len(rest) > 1 else None


def moaks_scores(region: str, feature: str, grade: int) -> dict:
    """One grade in its released answer JSON, e.g. ``{"MOAKS_scores": {"femur medial central
    BML": {"Number of BML within subregion": 2}}}`` (Q45: ``{"MOAKS_grade": {...: g}}``)."""
    value: object = grade
    for key in reversed(FEATURES[feature].released(region).path):
        value = {key: value}
    assert isinstance(value, dict)
    return value
