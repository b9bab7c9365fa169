"""The report lexicon covers every TotalSegmentator CT and MR class in English and German:
hand cases (names, synonyms, adjectives, presence words, vertebra and rib levels, sides,
compounds), every class name read back, and each sentence without a claim counted by reason
in the build report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxqa.anatomy.labelnames import TOTALSEG_CT, TOTALSEG_MR, display_name
from voxqa.build import build_reports
from voxqa.phantom import write_segmentation_phantom
from voxqa.radreports import lexicon
from voxqa.radreports.extract_rules import RuleExtractor, sentences
from voxqa.radreports.verify import parts
from voxqa.sources.segmentation import SegSpec

P, N = "positive", "negative"
# sentence -> [(structures, relation, polarity)]; [] with the reason a sentence yields no claim
EN = {
    "The right humerus is visible.": [(["humerus_right"], "present", P)],
    "The left humerus is not visualized.": [(["humerus_left"], "present", N)],
    "The 7th left rib is identified.": [(["rib_left_7"], "present", P)],
    "Rib 11 on the right is seen.": [(["rib_right_11"], "present", P)],
    "The eleventh ribs are seen.": [(["rib_left_11"], "present", P), (["rib_right_11"], "present", P)],
    "Fracture of the left 9th and 10th ribs.": [(["rib_left_9"], "present", P), (["rib_left_10"], "present", P)],
    "The L1 vertebra is seen.": [(["vertebrae_L1"], "present", P)],
    "The first lumbar vertebra is visualized.": [(["vertebrae_L1"], "present", P)],
    "T12 is identified.": [(["vertebrae_T12"], "present", P)],
    "The upper lobe of the left lung is visible.": [(["lung_upper_lobe_left"], "present", P)],
    "The RML is visualized.": [(["lung_middle_lobe_right"], "present", P)],
    "The portal vein is patent.": [(["portal_vein_and_splenic_vein"], "present", P)],
    "The superior vena cava lies to the right of the aorta.": [(["superior_vena_cava", "aorta"], "right_of", P)],
    "Both femoral heads are visualized.": [(["femur_left"], "present", P), (["femur_right"], "present", P)],
    "The left gluteus maximus muscle is visible.": [(["gluteus_maximus_left"], "present", P)],
    "The paraspinal muscles are seen.": [(["autochthon_left"], "present", P), (["autochthon_right"], "present", P)],
    "The thyroid gland is unremarkable.": [(["thyroid_gland"], "present", P)],
    "The spleen is not enlarged.": [(["spleen"], "present", P)],
    "The liver is free of lesions.": [(["liver"], "present", P)],
    "No gallbladder is seen.": [(["gallbladder"], "present", N)],
    "Neither the spleen nor the gallbladder is visualized.": [(["spleen"], "present", N),
                                                              (["gallbladder"], "present", N)],
    "Status post prostatectomy.": [(["prostate"], "present", N)],
    "The gall bladder is seen.": [(["gallbladder"], "present", P)],
    "The lumbar spine is visualized.": [(["lumbar_spine"], "present", P)],
    "The intervertebral discs are visible.": [(["intervertebral_discs"], "present", P)],
    "The left atrial appendage is seen.": [(["atrial_appendage_left"], "present", P)],
    "The right common carotid artery is identified.": [(["common_carotid_artery_right"], "present", P)],
    "The sternum lies anterior to the heart.": [(["sternum", "heart"], "anterior", P)],
    "The right clavicle is seen.": [(["clavicula_right"], "present", P)],
    "The kidney on the left is small.": [(["kidney_left"], "present", P)],
    "No free fluid.": "no_structure_word",
    "T2 hyperintense signal.": "no_structure_word",
    "No suspicious mass.": "lesion_or_midline_only",
    "Status post partial nephrectomy.": "partial_resection",
    "The left middle lobe is seen.": "side_not_in_label_vocabulary",
    "The left middle lobe lies above the liver.": "side_not_in_label_vocabulary",
}
DE = {
    "Der rechte Oberarmknochen ist abgebildet.": [(["humerus_right"], "present", P)],
    "Der Humerus rechts ist darstellbar.": [(["humerus_right"], "present", P)],
    "Die linke Niere ist nicht abgebildet.": [(["kidney_left"], "present", N)],
    "Die 7. Rippe links ist abgebildet.": [(["rib_left_7"], "present", P)],
    "Fraktur der 9. und 10. Rippe links.": [(["rib_left_9"], "present", P), (["rib_left_10"], "present", P)],
    "Schädel-Hirn-Trauma.": [(["skull"], "present", P), (["brain"], "present", P)],
    "LWK 1 ist abgebildet.": [(["vertebrae_L1"], "present", P)],
    "Th12 ist darstellbar.": [(["vertebrae_T12"], "present", P)],
    "Der erste Lendenwirbelkörper ist abgebildet.": [(["vertebrae_L1"], "present", P)],
    "Die Pfortader ist darstellbar.": [(["portal_vein_and_splenic_vein"], "present", P)],
    "Die Schilddrüse ist unauffällig.": [(["thyroid_gland"], "present", P)],
    "Nierenzyste links.": [(["lesion", "kidney_left"], "within", P)],
    "Leberzyste.": [(["lesion", "liver"], "within", P)],
    "Die Leber ist nicht vergrößert.": [(["liver"], "present", P)],
    "Kein Nachweis einer Milz.": [(["spleen"], "present", N)],
    "Die Gallenblase ist nicht darstellbar.": [(["gallbladder"], "present", N)],
    "Z.n. Prostatektomie.": [(["prostate"], "present", N)],
    "Der M. iliopsoas links ist abgebildet.": [(["iliopsoas_left"], "present", P)],
    "Die Lendenwirbelsäule ist abgebildet.": [(["lumbar_spine"], "present", P)],
    "Die Aorta liegt ventral der Wirbelsäule.": [(["aorta", "vertebrae"], "anterior", P)],
    "Der linke große Gesäßmuskel ist abgebildet.": [(["gluteus_maximus_left"], "present", P)],
    "Die Lungenvenen sind abgebildet.": [(["pulmonary_vein"], "present", P)],
    "Keine freie Flüssigkeit.": "no_structure_word",
    "Keine Raumforderung.": "lesion_or_midline_only",
}


@pytest.mark.parametrize("language,cases", [("en", EN), ("de", DE)])
def test_hand_cases(language: str, cases: dict) -> None:
    ex = RuleExtractor()
    for sentence, want in cases.items():
        assert [sentence[a:b] for a, b in sentences(sentence)] == [sentence]  # "7. Rippe", "M. iliopsoas"
        got = [(c.structures, c.relation, c.polarity) for c in ex.extract("s", sentence, language)]
        if isinstance(want, str):
            assert got == [] and ex.no_claim_reason(sentence, language) == want, (sentence, got)
        else:
            assert got == want, sentence
            assert ex.no_claim_reason(sentence, language) is None


def test_every_class_name_is_read_in_both_languages() -> None:
    """Each of the 121 CT/MR classes, named as questions name it ("the 7th left rib", "die
    siebte linke Rippe", "der Wirbelkörper L1"), reads back as a presence claim of exactly it
    (the kidney cysts as a lesion within their kidney)."""
    names = list(dict.fromkeys(TOTALSEG_CT + TOTALSEG_MR))
    assert len(names) == 121 and lexicon.VOCABULARY == tuple(names)
    ex = RuleExtractor()
    for label in names:
        for language, text in (("en", f"The {display_name(label)} is visible."),
                               ("de", f"{lexicon.name(label, 'de')[0].upper()}{lexicon.name(label, 'de')[1:]} ist abgebildet.")):
            claims = ex.extract("s", text, language)
            if label.startswith("kidney_cyst"):
                side = label.rsplit("_", 1)[1]
                assert [(c.structures, c.relation) for c in claims] == [(["lesion", f"kidney_{side}"], "within")]
                assert label in parts("lesion", names)
                continue
            assert [(c.structures, c.relation, c.polarity) for c in claims] == [([label], "present", P)], text


def test_groups_resolve_to_their_parts() -> None:
    names = list(TOTALSEG_CT)
    assert parts("rib_7", names) == ["rib_left_7", "rib_right_7"]
    assert parts("rib_left", names) == [f"rib_left_{n}" for n in sorted(range(1, 13), key=str)]
    assert parts("lumbar_spine", names) == [f"vertebrae_L{n}" for n in range(1, 6)]
    assert parts("lung_left", names) == ["lung_lower_lobe_left", "lung_upper_lobe_left"]
    assert parts("kidney", names) == ["kidney_left", "kidney_right"]  # not the cysts
    assert parts("vertebrae_L1", list(TOTALSEG_MR)) == []  # MR has one "vertebrae" label: unverifiable


def test_canonical_keywords_of_new_structures() -> None:
    assert lexicon.canonical_keyword("7th left rib") == lexicon.canonical_keyword("siebte linke Rippe") == "rib_left_7"
    assert lexicon.canonical_keyword("rechter Oberarmknochen") == lexicon.canonical_keyword("right humerus")
    assert lexicon.canonical_keyword("RUL") == "lung_upper_lobe_right"
    assert lexicon.canonical_keyword("Leber") == lexicon.canonical_keyword("hepatic") == "liver"


def test_sentences_without_claims_are_counted_by_reason(tmp_path: Path) -> None:
    """"The right humerus is visible." about a segmented right humerus is a supported presence
    claim (in English and German), the left one contradicted; each sentence with no claim is
    counted by reason in build_report.json and the manifest."""
    src = write_segmentation_phantom(tmp_path / "src")
    names = json.loads(src["label_names"].read_text())
    names = {k: ("humerus_right" if v == "stomach" else v) for k, v in names.items()}
    (tmp_path / "names.json").write_text(json.dumps(names))
    specs = [SegSpec(study_id=s, patient_id="p", image=src["image"], labels=src["labels"],
                     label_names=tmp_path / "names.json", modality="CT") for s in ("en", "de")]
    reports = tmp_path / "reports.jsonl"
    rows = [{"study_id": "en", "language": "en", "text": "The right humerus is visible. The left humerus is visible. "
             "No free fluid. No suspicious mass. Status post partial nephrectomy. The left middle lobe is seen."},
            {"study_id": "de", "language": "de", "text": "Der rechte Oberarmknochen ist abgebildet. "
             "Keine freie Flüssigkeit. Unauffälliger Befund."}]
    reports.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = build_reports(specs, reports, tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    claims = [json.loads(line) for line in (tmp_path / "ds" / "claims.jsonl").read_text().splitlines()]
    assert [(c["study_id"], c["structures"], c["relation"], c["verdict"]) for c in claims] == [
        ("en", ["humerus_right"], "present", "supported"), ("en", ["humerus_left"], "present", "contradicted"),
        ("de", ["humerus_right"], "present", "supported")]
    assert manifest["sentences"] == {"total": 9, "without_claim": {
        "lesion_or_midline_only": 1, "no_structure_word": 3, "partial_resection": 1,
        "side_not_in_label_vocabulary": 1}}
    report = json.loads((tmp_path / "ds" / "build_report.json").read_text())
    assert report["totals"]["sentences"] == 9 and report["totals"]["sentences_without_claim"] == 6
    info = report["info"]
    assert info["sentence_without_claim_no_structure_word"]["count"] == 3
    assert {e["sentence"] for e in info["sentence_without_claim_no_structure_word"]["examples"]} == {
        "No free fluid.", "Keine freie Flüssigkeit.", "Unauffälliger Befund."}
    assert info["sentence_without_claim_partial_resection"]["examples"] == [
        {"study": "en", "sentence": "Status post partial nephrectomy."}]
