"""RefRad2D / RadGrounder targets as the released code writes them (lmb-freiburg/radgrounder @
a8f332b): boxes binned after the 224 px resize in float32 (``<loc0512>`` at the far edge), the
class id from RadGrounder's 121-class map (MR aorta 23 -> 52), keywords tagged in place in the
sentence after the grounded-caption prompt. Hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voxqa.boxes.profiles import PROFILES
from voxqa.boxes.spaces import ResizedBins, Scaled
from voxqa.radreports.radgrounder import CLASS_IDS, MR_TO_CLASS, caption_target, class_id, prefix

# label_map/total_mr_id_2_frerad_id.json as released (MR id -> RadGrounder id)
RELEASED_MR = {**{i: i for i in range(1, 10)}, 10: 118, 11: 119, 12: 15, 13: 18, 14: 19, 15: 20, 16: 21, 17: 22,
               18: 25, 19: 121, 20: 120, 21: 79, 22: 51, 23: 52, 24: 63, 25: 64,
               **{i: i + 39 for i in range(26, 40)}, **{i: i + 40 for i in range(40, 50)}, 50: 90}


def test_boxes_are_binned_after_the_224_resize() -> None:
    """[27, 10, 96, 50] on a 96 x 80 frame. x: 224/96 in float32 is 2.33333325, times 27 is
    62.9999979 in float32, truncated to 62 (exactly 63), then int(62 / 224 * 512) = 141.
    y: 10 * 2.8 = 28 -> 64. The right edge 96 -> 224 -> 512, written <loc0512>. y 50 -> 140 -> 320.
    voxqa binned the frame itself before (exact, clamped at 511): [144, 64, 511, 320]."""
    space = ResizedBins()
    assert space.encode([27, 10, 96, 50], 96, 80) == [141, 64, 512, 320]
    assert Scaled("loc512", 512, clamp=True).encode([27, 10, 96, 50], 96, 80) == [144, 64, 511, 320]
    # a 512 px frame: 57 * 224 / 512 = 24.94 -> 24 -> int(24 / 224 * 512) = 54: three bins below 57
    assert space.encode([57, 57, 58, 58], 512, 512)[:2] == [54, 54]
    # the float32 product also keeps a 23 px frame's right edge at 223 of 224: bin 509, not 512
    assert space.encode([0, 0, 23, 23], 23, 23) == [0, 0, 509, 509]
    tag = PROFILES["radgrounder"].syntax.write(space.encode([27, 10, 96, 50], 96, 80), "aorta", 52)
    assert tag == "<p bbox=<loc0141><loc0064><loc0512><loc0320> id=<seg052>>aorta</p>"
    found = PROFILES["radgrounder"].find(tag)
    assert [(f.values, f.label) for f in found] == [([141, 64, 512, 320], "aorta")]
    assert PROFILES["radgrounder"].decode(found[0].values, 96, 80) == (26, 10, 96, 50)  # 141 * 96 / 512 = 26.4


def test_class_ids_are_radgrounders() -> None:
    assert sorted(CLASS_IDS.values()) == list(range(1, 122))
    assert MR_TO_CLASS == RELEASED_MR
    assert MR_TO_CLASS[23] == class_id("aorta") == 52  # TotalSegmentator-MR's aorta is label 23
    assert class_id("lung_left") == 118 and class_id("vertebrae") == 121 and class_id("Kidney R") == 2
    assert class_id("liver_lesion") is None


def test_caption_target_tags_keywords_in_place() -> None:
    box = {"humerus_right": (27, 10, 96, 50)}
    tag = "<p bbox=<loc0141><loc0064><loc0512><loc0320> id=<seg070>>"
    assert caption_target("The right humerus is visible.", "en", box, {}, ["humerus_right"], 96, 80).text == (
        f"The {tag}right humerus</p> is visible.")
    assert caption_target("Der rechte Oberarmknochen ist abgebildet.", "de", box, {}, ["humerus_right"], 96, 80).text == (
        f"Der {tag}rechte Oberarmknochen</p> ist abgebildet.")
    assert prefix("en") == "<image>\n\nCaption this image and detect keywords: "
    assert prefix("de") == "<image>\n\nBeschreibe dieses Bild und detektiere Schlüsselwörter: "
    # one class per keyword: "kidneys" carries the kidney with most pixels on the frame
    both = caption_target("Both kidneys are present.", "en", {"kidney_left": (0, 0, 10, 10), "kidney_right": (50, 0, 60, 10)},
                          {"kidney_left": 40, "kidney_right": 90}, ["kidney_left", "kidney_right"], 96, 80)
    # x 50 -> 116.67 -> 116 -> int(116 / 224 * 512) = 265; 60 -> 140 -> 320; y 10 -> 28 -> 64
    assert both.text == "Both <p bbox=<loc0265><loc0000><loc0320><loc0064> id=<seg002>>kidneys</p> are present."
    assert both.left_out == [{"label": "kidney_left", "reason": "another structure tagged on its keyword"}]
    # a lesion label is no RadGrounder class: left out, and said why
    lesion = caption_target("There is a lesion in the liver.", "en", {"liver": (0, 0, 48, 40), "liver_lesion": (5, 5, 9, 9)},
                            {}, ["liver", "liver_lesion"], 96, 80)
    assert lesion.text == "There is a lesion in the <p bbox=<loc0000><loc0000><loc0256><loc0256> id=<seg005>>liver</p>."
    assert lesion.left_out == [{"label": "liver_lesion", "reason": "no RadGrounder class"}]



@pytest.mark.realdata
def test_mr_targets_use_radgrounder_class_ids(reports_dir: Path, tmp_path: Path) -> None:
    """The shared MR (TotalSegmentator-MR labels: aorta 23, IVC 24) is tagged with
    RadGrounder's ids (52, 63), as is the CT (aorta 52 both ways); every row is the sentence with
    its keywords tagged in place, after the grounded-caption prompt."""
    from voxqa.build import build_reports
    from voxqa.sources.segmentation import read_studies_csv

    manifest = build_reports(read_studies_csv(reports_dir / "studies.csv"), reports_dir / "reports.jsonl",
                             tmp_path / "ds", fractions=(1.0, 0.0, 0.0))
    rows = [json.loads(line) for line in (tmp_path / "ds" / "grounding.jsonl").open()]
    seen = {}
    for row in rows:
        for kw in row["keywords"]:
            seen[row["study_id"], kw["label"]] = (kw["label_id"], kw["radgrounder_id"])
        for t in row["tags_radgrounder"]:
            assert f"id=<seg{t['class_id']:03d}>>{t['keyword']}</p>" in row["target_radgrounder"]
        assert row["prefix_radgrounder"] == prefix(row["language"])
    assert seen["ts_mr_en", "aorta"] == (23, 52) and seen["ts_mr_en", "inferior_vena_cava"] == (24, 63)
    assert seen["ts_ct_en", "aorta"] == (52, 52)
    mr_aorta = [r for r in rows if r["study_id"] == "ts_mr_en" and any(t["label"] == "aorta" for t in r["tags_radgrounder"])]
    assert mr_aorta and all("<seg023>" not in r["target_radgrounder"] for r in mr_aorta)
    assert manifest["radgrounder_targets"]["rows"] == len(rows) == 384
