"""voxqa.eval.metrics against reference implementations and brute force on random data."""

import contextlib
import io
import itertools
import random

import numpy as np
import pytest
import sacrebleu
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rouge_score import rouge_scorer
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

from voxqa.eval.metrics.aggregate import aggregate, all_groups
from voxqa.eval.metrics.boxes import RECALL_THRESHOLDS, THRESHOLDS, average_precision, box3d_iou, match_boxes
from voxqa.eval.metrics.items import score_answer, score_item
from voxqa.eval.metrics.statistics import below_chance_p, holm, set_prf
from voxqa.eval.metrics.text import bleu, entity_f1, extract_entities, rouge_l
from voxqa.boxes.geometry import iou
from voxqa.schema import BoxesAnswer, NumberAnswer


def _box(r, size=60, lo=4, hi=30):
    x0, y0 = r.randrange(0, size - lo), r.randrange(0, size - lo)
    return [x0, y0, min(size, x0 + r.randrange(lo, hi)), min(size, y0 + r.randrange(lo, hi))]


def _record(answer_type, scores, parse_ok=True, chance=None, **fields):
    base = {"task": "t", "subtask": "s", "level": "volume", "label": None, "template": "x",
            "category": None, "answer_type": answer_type, "chance": chance,
            "parse_ok": parse_ok, "scores": scores}
    return base | fields


# --- boxes ------------------------------------------------------------------------------------


def _brute_force_miou(gold, pred):
    """Best total IoU over every injective gold -> (pred or nothing) assignment."""
    def pair(g, p):
        return iou(g["box"], p["box"]) if g["frame"] == p["frame"] else 0.0

    slots = list(range(len(pred))) + [None] * len(gold)
    best = 0.0
    for perm in itertools.permutations(slots, len(gold)):
        total = sum(pair(g, pred[j]) for g, j in zip(gold, perm, strict=True) if j is not None)
        best = max(best, total)
    return best / len(gold)


def test_hungarian_mean_iou_matches_brute_force():
    r = random.Random(0)
    for _ in range(150):
        gold = [{"frame": r.randrange(2), "box": _box(r)} for _ in range(r.randint(1, 4))]
        pred = [{"frame": r.randrange(2), "box": _box(r)} for _ in range(r.randint(0, 4))]
        s = score_item("boxes", gold, pred)
        assert s["miou"] == pytest.approx(_brute_force_miou(gold, pred))
        assert s["v_score"] == s["miou"]
        matched = match_boxes(gold, pred)
        assert len({i for i, _, _ in matched}) == len({j for _, j, _ in matched}) == len(matched)


def test_boxes_on_different_frames_never_match():
    gold = [{"frame": 3, "box": [10, 10, 30, 30]}]
    pred = [{"frame": 4, "box": [10, 10, 30, 30]}]
    assert match_boxes(gold, pred) == []
    s = score_item("boxes", gold, pred)
    assert s["miou"] == 0.0
    assert (s["tp@0.1"], s["fp@0.1"], s["fn@0.1"]) == (0.0, 1.0, 1.0)


def test_box_counts_and_micro_prf_by_hand():
    gold = [{"frame": 0, "box": [0, 0, 10, 10]}, {"frame": 0, "box": [20, 20, 30, 30]},
            {"frame": 1, "box": [0, 0, 10, 10]}]
    # IoU 0.5 with gold 0; IoU 0.2 with gold 1; a wrong-frame copy of gold 2; an extra box
    pred = [{"frame": 0, "box": [0, 0, 10, 5]}, {"frame": 0, "box": [20, 20, 30, 22]},
            {"frame": 2, "box": [0, 0, 10, 10]}, {"frame": 1, "box": [40, 40, 50, 50]}]
    s = score_item("boxes", gold, pred)
    assert s["miou"] == pytest.approx((0.5 + 0.2) / 3)
    assert (s["tp@0.1"], s["fp@0.1"], s["fn@0.1"]) == (2, 2, 1)
    assert (s["tp@0.25"], s["fp@0.25"], s["fn@0.25"]) == (1, 3, 2)
    assert (s["tp@0.5"], s["fp@0.5"], s["fn@0.5"]) == (1, 3, 2)
    # a second item: one exact box, so micro counts over both items are TP 3, FP 2, FN 1 @0.1
    exact = [{"frame": 5, "box": [1, 1, 9, 9]}]
    s2 = score_item("boxes", exact, exact)
    m = aggregate([_record("boxes", s), _record("boxes", s2)], n_boot=50)["overall"]["metrics"]
    assert m["precision@0.1"]["mean"] == pytest.approx(3 / 5)
    assert m["recall@0.1"]["mean"] == pytest.approx(3 / 4)
    assert m["f1@0.1"]["mean"] == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))
    assert m["precision@0.5"]["mean"] == pytest.approx(2 / 5)
    assert m["recall@0.5"]["mean"] == pytest.approx(2 / 4)
    assert m["miou"]["mean"] == pytest.approx(((0.7 / 3) + 1.0) / 2)


def test_boxes_edge_cases():
    assert score_item("boxes", [], [])["miou"] == 1.0
    assert score_item("boxes", [], [{"frame": 0, "box": [0, 0, 2, 2]}])["miou"] == 0.0
    s = score_item("boxes", [{"frame": 0, "box": [0, 0, 2, 2]}], None)
    assert s["miou"] == 0.0 and s["fn@0.5"] == 1.0 and s["fp@0.5"] == 0.0
    answer = BoxesAnswer(value=[{"frame": 2, "box": (0, 0, 4, 4)}])
    assert score_answer(answer, [{"frame": 2, "box": [0, 0, 4, 2]}])["miou"] == pytest.approx(0.5)


# --- AP@0.5 against pycocotools --------------------------------------------------------------


def _coco_ap(images, dets):
    """pycocotools AP@0.5 (all areas, 100 dets); images: [gt boxes], dets: (img, box, score)."""
    def xywh(b):
        return [b[0], b[1], b[2] - b[0], b[3] - b[1]]

    anns = [{"id": k + 1, "image_id": i, "category_id": 1, "bbox": xywh(b),
             "area": (b[2] - b[0]) * (b[3] - b[1]), "iscrowd": 0}
            for k, (i, b) in enumerate((i, b) for i, boxes in enumerate(images) for b in boxes)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i} for i in range(len(images))], "annotations": anns,
                      "categories": [{"id": 1, "name": "finding"}]}
        gt.createIndex()
        dt = gt.loadRes([{"image_id": i, "category_id": 1, "bbox": xywh(b), "score": s}
                         for i, b, s in dets])
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    # pycocotools' bbox IoU is w*h with no +1, the same as voxqa.boxes.geometry on xyxy max-exclusive
    for (i, _), ious in ev.ious.items():
        if len(ious):
            g = images[i]
            d = sorted([(s, b) for j, b, s in dets if j == i], key=lambda x: -x[0])
            expect = [[iou(db, gb) for gb in g] for _, db in d]
            np.testing.assert_allclose(ious, expect)
    p = ev.eval["precision"][0, :, 0, 0, 2]  # IoU 0.5, category, area all, maxDets 100
    return float(p[p > -1].mean())


def _detection_scene(seed):
    """Images with <= 1 gold box each (one image per frame), a good prediction (IoU >= 0.6) for
    most and poor ones (IoU < 0.4): TP/FP labels are then the same under any matching."""
    r = random.Random(seed)
    images, dets = [], []
    for i in range(40):
        gold = [_box(r, 100, 10, 40)] if r.random() < 0.8 else []
        images.append(gold)
        if gold and r.random() < 0.7:
            while iou(b := [v + r.randint(-2, 2) for v in gold[0]], gold[0]) < 0.6:
                pass
            dets.append((i, b, True))
        for _ in range(r.randint(0, 2)):
            while gold and iou(b := _box(r, 100, 10, 40), gold[0]) >= 0.4:
                pass
            if not gold:
                b = _box(r, 100, 10, 40)
            dets.append((i, b, False))
    return images, dets


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_average_precision_matches_cocoeval_with_distinct_scores(seed):
    images, dets = _detection_scene(seed)
    scores = np.random.default_rng(seed).permutation(len(dets)) / len(dets) + 0.01
    n_gt = sum(len(g) for g in images)
    ours = average_precision(scores, [tp for _, _, tp in dets], n_gt)
    scored = [(i, b, s) for (i, b, _), s in zip(dets, scores, strict=True)]
    assert ours == pytest.approx(_coco_ap(images, scored), abs=1e-9)


@pytest.mark.parametrize("seed", [4, 5])
def test_ap50_with_unscored_boxes_is_cocoeval_with_ties_broken_pessimistically(seed):
    images, dets = _detection_scene(seed)
    records = []
    for i, gold in enumerate(images):
        pred = [{"frame": i, "box": b} for j, b, _ in dets if j == i]
        s = score_item("boxes", [{"frame": i, "box": b} for b in gold], pred)
        assert s["tp@0.5"] == sum(tp for j, _, tp in dets if j == i)
        records.append(_record("boxes", s))
    ap = aggregate(records, (), n_boot=100)["overall"]["metrics"]["ap@0.5"]["mean"]
    # all boxes at confidence 1.0: COCO's curve with every FP ranked before every TP
    pessimistic = _coco_ap(images, [(i, b, 0.5 if tp else 1.0) for i, b, tp in dets])
    optimistic = _coco_ap(images, [(i, b, 1.0 if tp else 0.5) for i, b, tp in dets])
    assert ap == pytest.approx(pessimistic, abs=1e-9)
    assert optimistic >= ap
    tp = sum(t for *_, t in dets)
    n_gt = sum(len(g) for g in images)
    precision, recall = tp / len(dets), tp / n_gt
    assert ap == pytest.approx(precision * np.sum(RECALL_THRESHOLDS <= recall) / 101)
    assert average_precision([1.0] * len(dets), [t for *_, t in dets], n_gt) == pytest.approx(ap)


def test_average_precision_ignores_order_within_ties():
    r = random.Random(7)
    scores = [r.choice([0.2, 0.5, 0.9]) for _ in range(30)]
    labels = [r.random() < 0.5 for _ in range(30)]
    first = average_precision(scores, labels, 25)
    for _ in range(5):
        perm = r.sample(range(30), 30)
        assert average_precision([scores[i] for i in perm], [labels[i] for i in perm], 25) == \
            pytest.approx(first)
    assert average_precision([], [], 3) == 0.0
    assert average_precision([0.5], [False], 0) is None


# --- closed-form answers ----------------------------------------------------------------------


def test_closed_form_scores():
    assert score_item("yes_no", "yes", "yes")["correct"] == 1.0
    assert score_item("yes_no", "yes", None)["correct"] == 0.0
    assert score_item("choice", 2, 1)["a_score"] == 0.0
    s = score_item("multi_choice", [0, 2], [0, 1, 2])
    assert (s["exact_match"], s["correct"]) == (0.0, 0.0)
    assert s["set_f1"] == s["a_score"] == pytest.approx(0.8)
    assert score_item("multi_choice", [], [])["set_f1"] == 1.0
    assert score_item("multi_choice", [1], None)["set_f1"] == 0.0
    s = score_item("number", 10, 10.9, tolerance=1.0)
    assert s["within_tolerance"] == 1.0 and s["abs_error"] == pytest.approx(0.9)
    assert score_item("number", 0.2, 0.3, tolerance=0.1)["within_tolerance"] == 1.0
    assert score_item("number", 10, 11.5, tolerance=1.0)["correct"] == 0.0
    assert score_item("number", 10, None)["abs_error"] is None
    assert score_answer(NumberAnswer(value=100, tolerance=10), 109)["correct"] == 1.0
    assert score_item("grade", 1, 3, scale=[0, 1, 2, 3])["abs_error"] == 2.0
    assert score_item("grade", 1, None, scale=[0, 1, 2, 3])["grade_pred"] == 3.0
    assert score_item("grade", 1, None)["grade_pred"] is None


def test_set_prf_and_frames():
    assert set_prf([1, 2, 3, 4], [3, 4, 5]) == pytest.approx((2 / 3, 1 / 2, 4 / 7))
    assert set_prf([], []) == (1.0, 1.0, 1.0)
    assert set_prf([1], []) == set_prf([], [1]) == set_prf([1], None) == (0.0, 0.0, 0.0)
    s = score_item("frames", [3, 4, 5], [4, 5, 6, 7])
    assert (s["frame_precision"], s["frame_recall"]) == pytest.approx((0.5, 2 / 3))


def test_box3d_iou_counts_inclusive_frames():
    r = random.Random(3)
    for _ in range(100):
        boxes = []
        for _ in range(2):
            fs = r.randrange(10)
            boxes.append({"frame_start": fs, "frame_end": r.randrange(fs, 12),
                          "box": _box(r, 20, 1, 12)})
        masks = []
        for b in boxes:
            m = np.zeros((12, 20, 20), bool)
            x0, y0, x1, y1 = b["box"]
            m[b["frame_start"]:b["frame_end"] + 1, y0:y1, x0:x1] = True
            masks.append(m)
        expect = (masks[0] & masks[1]).sum() / (masks[0] | masks[1]).sum()
        assert box3d_iou(*boxes) == pytest.approx(expect)
        s = score_item("box3d", *boxes)
        assert s["acc@0.5"] == float(expect >= 0.5)
    one = {"frame_start": 4, "frame_end": 4, "box": [0, 0, 2, 2]}
    assert box3d_iou(one, one) == 1.0
    assert score_item("box3d", one, None)["iou3d"] == 0.0


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_balanced_accuracy_matches_sklearn_and_counts_unparseable_as_wrong():
    r = random.Random(11)
    gold = [r.choice(["yes", "yes", "yes", "no"]) for _ in range(200)]
    pred = [r.choice(["yes", "no", None]) for _ in range(200)]
    records = [_record("yes_no", score_item("yes_no", g, p), parse_ok=p is not None, chance=0.5)
               for g, p in zip(gold, pred, strict=True)]
    out = aggregate(records, (), n_boot=200)["overall"]
    expect = balanced_accuracy_score(gold, [p or "invalid" for p in pred])
    assert out["metrics"]["balanced_accuracy"]["mean"] == pytest.approx(expect)
    accuracy = np.mean([g == p for g, p in zip(gold, pred, strict=True)])
    assert out["metrics"]["accuracy"]["mean"] == pytest.approx(accuracy)
    assert out["parse_failures"]["count"] == pred.count(None)
    assert out["parse_failures"]["rate"] == pytest.approx(pred.count(None) / 200)
    lo, hi = out["metrics"]["balanced_accuracy"]["ci"]
    assert lo <= expect <= hi


def test_balanced_accuracy_keeps_answer_types_apart():
    records = [_record("yes_no", score_item("yes_no", "yes", "yes")),
               _record("choice", score_item("choice", 1, 0)),
               _record("choice", score_item("choice", 1, 1)),
               _record("choice", score_item("choice", 0, 0))]
    m = aggregate(records, (), n_boot=20)["overall"]["metrics"]
    assert m["balanced_accuracy"]["mean"] == pytest.approx((1.0 + 0.5 + 1.0) / 3)


def test_qwk_matches_sklearn():
    r = np.random.default_rng(2)
    gold = r.integers(0, 5, 300)
    pred = np.clip(gold + r.integers(-2, 3, 300), 0, 4)
    records = [_record("grade", score_item("grade", int(g), int(p), scale=range(5)))
               for g, p in zip(gold, pred, strict=True)]
    qwk = aggregate(records, (), n_boot=200)["overall"]["metrics"]["qwk"]
    assert qwk["mean"] == pytest.approx(cohen_kappa_score(gold, pred, weights="quadratic"))
    assert qwk["ci"][0] <= qwk["mean"] <= qwk["ci"][1]
    # an unparseable grade is scored as the farthest grade of the scale
    records.append(_record("grade", score_item("grade", 0, None, scale=range(5)), parse_ok=False))
    worst = aggregate(records, (), n_boot=20)["overall"]["metrics"]["qwk"]["mean"]
    assert worst == pytest.approx(cohen_kappa_score([*gold, 0], [*pred, 4], weights="quadratic"))


# --- text -------------------------------------------------------------------------------------

WORDS = ["left", "right", "meniscus", "tear", "lesion", "frame", "on", "of", "the", "3", "12",
         "box", "edema", "cyst", "small", "large"]


def _sentence(r, n):
    return " ".join(r.choice(WORDS) for _ in range(n))


def test_bleu_matches_sacrebleu():
    r = random.Random(5)
    for _ in range(50):
        hyp, ref = _sentence(r, r.randint(1, 15)), _sentence(r, r.randint(1, 15))
        assert bleu(hyp, ref) == pytest.approx(sacrebleu.sentence_bleu(hyp, [ref]).score / 100)
    # with every n-gram order matched, smoothing and effective order do not apply, so the
    # sentence score equals corpus BLEU of the one pair
    ref = "the small lesion on frame 12 of the left meniscus is a tear"
    hyp = "the small lesion on frame 12 of the right meniscus is a tear"
    assert bleu(hyp, ref) == pytest.approx(sacrebleu.corpus_bleu([hyp], [[ref]]).score / 100)
    assert bleu(ref, ref) == pytest.approx(1.0)


def _lcs_f1(hyp, ref):
    a, b = hyp.split(), ref.split()
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            t[i + 1][j + 1] = t[i][j] + 1 if x == y else max(t[i][j + 1], t[i + 1][j])
    lcs = t[-1][-1]
    return 0.0 if lcs == 0 else 2 * lcs / (len(a) + len(b))


def test_rouge_l_matches_rouge_score_and_lcs():
    r = random.Random(6)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for _ in range(50):
        hyp, ref = _sentence(r, r.randint(1, 15)), _sentence(r, r.randint(1, 15))
        assert rouge_l(hyp, ref) == pytest.approx(scorer.score(ref, hyp)["rougeL"].fmeasure)
        assert rouge_l(hyp, ref) == pytest.approx(_lcs_f1(hyp, ref))


def test_entities_are_grounded_on_their_frames_and_boxes():
    vocab = ["Meniscus Tear", "Tear", "kidney_right", "Edema"]
    ref = ("Meniscus Tear: 2 lesion(s) on frames 3-5, 9, boxes Frame 4: [1, 2, 30, 40] "
           "Meniscus Tear; Frame 9: [5, 5, 9, 9] Meniscus Tear.")
    assert extract_entities(ref, vocab) == {
        *(("label@frame", f"meniscus tear@{k}") for k in (3, 4, 5, 9)),
        ("box", "meniscus tear@4:[1.0, 2.0, 30.0, 40.0]"), ("box", "meniscus tear@9:[5.0, 5.0, 9.0, 9.0]")}
    # a label placed nowhere stays a bare label; frames of a clause belong to its labels only
    hyp = "A tear of the right kidney. Kidney Right edema on frame 4."
    assert extract_entities(hyp, vocab) == {
        ("label", "tear"), ("label@frame", "kidney right@4"), ("label@frame", "edema@4"), ("side", "right")}
    assert score_item("text", ref, ref, vocabulary=vocab)["entity_f1"] == 1.0
    assert score_item("text", ref, None)["bleu"] == 0.0
    assert score_item("text", "No findings annotated.", "No findings annotated.", vocabulary=vocab)["entity_f1"] == 1.0
    assert len(extract_entities("Tear on frames 0-999999999", vocab)) <= 5000


CAPTION = ("Meniscus Tear: 1 lesion(s) on frames 14-15, boxes Frame 14: [108, 168, 123, 178] Meniscus Tear; "
           "Frame 15: [108, 168, 124, 179] Meniscus Tear. Joint Effusion: 1 lesion(s) on frames 20-21, boxes "
           "Frame 20: [86, 51, 255, 150] Joint Effusion; Frame 21: [80, 37, 278, 154] Joint Effusion.")
KNEE = ["Meniscus Tear", "Joint Effusion", "Bone - Lesion"]


def _swap(text: str, a: str, b: str) -> str:
    return text.replace(a, "\0").replace(b, a).replace("\0", b)


def test_a_caption_with_findings_on_each_others_frames_scores_no_entity():
    """The case that fooled the text metrics: each finding put on the other's frames and boxes.
    Words and n-grams barely change, grounded entities are all wrong."""
    swapped = _swap(CAPTION, "Meniscus Tear", "Joint Effusion")
    s = score_item("text", CAPTION, swapped, vocabulary=KNEE)
    assert s["token_f1"] == 1.0 and s["bleu"] > 0.9  # surface overlap: not grounded
    assert s["entity_f1"] == 0.0
    assert score_item("text", CAPTION, CAPTION, vocabulary=KNEE)["entity_f1"] == 1.0  # the oracle
    # right frames, a box off its lesion (IoU < 0.5): the frame counts, the box does not
    moved = CAPTION.replace("[108, 168, 123, 178]", "[130, 168, 145, 178]")
    assert entity_f1(moved, CAPTION, KNEE) == pytest.approx(2 * 7 / 16)
    # a box a few pixels off (IoU >= 0.5) still counts; half the findings right: about half
    near = CAPTION.replace("[108, 168, 123, 178]", "[109, 168, 123, 178]")
    assert entity_f1(near, CAPTION, KNEE) == 1.0
    half = CAPTION.split(" Joint Effusion: ")[0]
    assert entity_f1(half, CAPTION, KNEE) == pytest.approx(2 * 4 / 12)


@pytest.mark.parametrize("written", [
    "Frame 14: <|object_ref_start|>meniscus tear<|object_ref_end|><|box_start|>(438,156),(703,375)<|box_end|>",
    "Frame 14: meniscus tear<loc_437><loc_156><loc_703><loc_375>",
    "Frame 14: <ref>meniscus tear</ref><box>438 156 703 375</box>",
    'Frame 14: [{"bbox_2d": [438, 156, 703, 375], "label": "meniscus tear"}]',
])
def test_grounded_entities_read_every_profile_box_form(written):
    entities = extract_entities(written, KNEE)
    assert ("label@frame", "meniscus tear@14") in entities
    assert [e for e in entities if e[0] == "box"] == [("box", "meniscus tear@14:[438.0, 156.0, 703.0, 375.0]")] \
        or [e for e in entities if e[0] == "box"] == [("box", "meniscus tear@14:[437.0, 156.0, 703.0, 375.0]")]
    assert entity_f1(written, written, KNEE) == 1.0
    assert entity_f1(written.replace("14", "15", 1), written, KNEE) == 0.0


# --- aggregation ------------------------------------------------------------------------------


def _bernoulli_records(p, n, seed):
    r = np.random.default_rng(seed)
    return [_record("yes_no", score_item("yes_no", "yes", "yes" if c else "no"), chance=0.5)
            for c in r.random(n) < p]


def test_bootstrap_ci_covers_mean_and_is_deterministic():
    # a_score is bootstrapped (set F1 for multi-choice; 0/1 here); accuracy gets Wilson
    records = _bernoulli_records(0.7, 400, seed=1)
    a = aggregate(records, (), seed=3)["overall"]["metrics"]["a_score"]
    b = aggregate(records, (), seed=3)["overall"]["metrics"]["a_score"]
    c = aggregate(records, (), seed=4)["overall"]["metrics"]["a_score"]
    assert a == b and a["ci"] != c["ci"] and a["ci_method"] == "bootstrap"
    lo, hi = a["ci"]
    assert lo < 0.7 < hi and lo < a["mean"] < hi
    se = np.sqrt(a["mean"] * (1 - a["mean"]) / 400)  # normal-approximation width as a check
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.15)
    # coverage over repeated samples is near the nominal 95%
    covered = [lo <= 0.7 <= hi for s in range(40)
               for lo, hi in [aggregate(_bernoulli_records(0.7, 100, s), (), n_boot=300)
                              ["overall"]["metrics"]["a_score"]["ci"]]]
    assert np.mean(covered) >= 0.85


def test_proportions_get_wilson_intervals():
    """0/8 must not get [0, 0]. Hand-computed Wilson bounds (z = 1.959964):
    0/8 -> [0, z^2 / (8 + z^2)] = [0, 0.32441]; 4/8 -> 0.5 -/+ 0.28494 ... [0.21521, 0.78479]."""
    zero = [_record("yes_no", score_item("yes_no", "yes", "no"), chance=0.5)] * 8
    acc = aggregate(zero, (), n_boot=50)["overall"]["metrics"]["accuracy"]
    assert acc["mean"] == 0.0 and acc["ci_method"] == "wilson"
    assert acc["ci"][0] == 0.0 and acc["ci"][1] == pytest.approx(0.32441, abs=1e-5)
    half = zero[:4] + [_record("yes_no", score_item("yes_no", "yes", "yes"), chance=0.5)] * 4
    acc = aggregate(half, (), n_boot=50)["overall"]["metrics"]["accuracy"]
    assert acc["ci"] == pytest.approx([0.21521, 0.78479], abs=1e-5)
    # exact match and acc@0.5 of 3D boxes are proportions too; IoU means keep the bootstrap
    b = {"frame_start": 0, "frame_end": 1, "box": [0, 0, 4, 4]}
    m = aggregate([_record("box3d", score_item("box3d", b, b))] * 3, (), n_boot=50)["overall"]["metrics"]
    assert m["acc@0.5"]["ci_method"] == "wilson" and m["iou3d"]["ci_method"] == "bootstrap"
    assert m["acc@0.5"]["ci"][1] == 1.0 and m["acc@0.5"]["ci"][0] == pytest.approx(0.43850, abs=1e-5)


def test_below_chance_flag_and_chance():
    worse = _bernoulli_records(0.2, 200, seed=2)
    out = aggregate(worse, (), n_boot=200)["overall"]
    assert out["chance"] == 0.5 and out["below_chance"] is True
    better = _bernoulli_records(0.6, 200, seed=2)
    assert aggregate(better, (), n_boot=200)["overall"]["below_chance"] is False
    counting = [_record("number", score_item("number", 3, 3))] * 5
    out = aggregate(counting, (), n_boot=20)["overall"]
    assert out["below_chance"] is None and out["below_chance_test"] is None


def _yes_no(right, **fields):
    return _record("yes_no", score_item("yes_no", "yes", "yes" if right else "no"), chance=0.5,
                   **fields)


def test_below_chance_exact_binomial_with_holm_by_hand():
    """Label A: 1/10 right, P(X <= 1) = 11/1024; label B: 3/10, P(X <= 3) = 176/1024; overall
    4/20, P(X <= 4) = 6196/2^20. Holm over the 3 groups: 3 * 0.0059090 = 0.017727,
    max(that, 2 * 0.0107422) = 0.021484, max(that, 1 * 0.171875) = 0.171875."""
    records = ([_yes_no(i < 1, label="A") for i in range(10)]
               + [_yes_no(i < 3, label="B") for i in range(10)])
    out = aggregate(records, ("label",), n_boot=20)
    a, b, overall = out["by"]["label"]["A"], out["by"]["label"]["B"], out["overall"]
    assert a["below_chance_test"]["p"] == pytest.approx(11 / 1024)
    assert b["below_chance_test"]["p"] == pytest.approx(176 / 1024)
    assert overall["below_chance_test"]["p"] == pytest.approx(6196 / 2**20)
    assert overall["below_chance_test"]["method"] == "binomial"
    assert overall["below_chance_test"]["p_holm"] == pytest.approx(3 * 6196 / 2**20)
    assert a["below_chance_test"]["p_holm"] == pytest.approx(2 * 11 / 1024)
    assert b["below_chance_test"]["p_holm"] == pytest.approx(176 / 1024)
    assert (overall["below_chance"], a["below_chance"], b["below_chance"]) == (True, True, False)
    assert a["below_chance_test"]["family_size"] == 3
    # alone (a family of one) B is still not below chance; with 5 of 10 right nothing is
    assert aggregate([_yes_no(i < 5) for i in range(10)], (), n_boot=20)["overall"]["below_chance"] is False


def test_holm_step_down_by_hand():
    groups = [{"below_chance_test": {"p": p}} for p in (0.01, 0.04, 0.03)] + [{"below_chance_test": None}]
    holm(groups)
    assert [g["below_chance_test"]["p_holm"] for g in groups[:3]] == pytest.approx([0.03, 0.06, 0.06])
    assert [g.get("below_chance") for g in groups] == [True, False, False, None]


def test_below_chance_poisson_binomial_for_mixed_chance():
    """Chances 0.5, 0.5, 0.25. 0 right: 0.5 * 0.5 * 0.75 = 0.1875; 1 right: + 2 * 0.5 * 0.5 *
    0.75 + 0.5 * 0.5 * 0.25 = 0.625 (the mean-chance binomial would give 0.2963 / 0.7407)."""
    c = np.array([0.5, 0.5, 0.25])
    assert below_chance_p(np.array([0.0, 0.0, 0.0]), c) == (pytest.approx(0.1875), "poisson_binomial")
    assert below_chance_p(np.array([1.0, 0.0, 0.0]), c)[0] == pytest.approx(0.625)
    assert below_chance_p(np.array([1.0, 1.0, 1.0]), c)[0] == pytest.approx(1.0)
    # equal chances: scipy's binomtest itself
    assert below_chance_p(np.zeros(4), np.full(4, 0.25)) == (pytest.approx(0.75**4), "binomial")


def test_random_guessing_is_not_flagged_below_chance():
    """Seeded coin flips at each item's chance (yes/no 1/2, 4 options 1/4): never flagged."""
    r = random.Random(7)
    records = []
    for i in range(300):
        k = 2 if i % 2 else 4
        gold, guess = r.randrange(k), r.randrange(k)
        sc = score_item("choice", gold, guess)
        records.append(_record("choice", sc, chance=1 / k, label=f"L{i % 5}", task=f"t{i % 3}"))
    out = aggregate(records, ("label", "task"), n_boot=20)
    assert not any(g["below_chance"] for g in all_groups(out))


def test_mae_charges_an_unparsed_answer_the_fixed_span_of_its_scale():
    """Counts stated on [0, 4]: an unparsed answer costs 4 whatever its gold and whatever the
    other items' errors (before: max(|gold|, the group's largest parsed error), so gold 1 among
    parsed errors 2 and 0 cost 2, and alone it cost 1). Grades on 0-3 cost the span 3."""
    scale = (0, 4)
    parsed = [_record("number", score_item("number", 1, 3, scale=scale)),  # error 2
              _record("number", score_item("number", 2, 2, scale=scale))]  # error 0
    big = _record("number", score_item("number", 3, None, scale=scale), parse_ok=False)
    small = _record("number", score_item("number", 1, None, scale=scale), parse_ok=False)
    assert big["scores"]["abs_error"] == small["scores"]["abs_error"] == 4.0
    mae = lambda recs: aggregate(recs, (), n_boot=50)["overall"]["metrics"]["mae"]  # noqa: E731
    assert mae(parsed)["mean"] == pytest.approx(1.0)
    assert mae(parsed + [big])["mean"] == pytest.approx(6 / 3) and mae(parsed + [big])["n"] == 3
    assert mae(parsed + [small])["mean"] == pytest.approx(6 / 3)
    assert mae([big, small])["mean"] == pytest.approx(4.0)
    # the case: gold 2, answering 50 costs 48; not parsing costs the span, here 4
    assert score_item("number", 2, 50, scale=scale)["abs_error"] == 48.0
    assert score_item("number", 2, None)["abs_error"] is None  # no stated scale: no error to charge
    g = score_item("grade", 1, None, scale=(0, 1, 2, 3))
    assert g["abs_error"] == 3.0 and g["grade_pred"] == 3.0  # MAE: the span; QWK: the farthest grade
    assert mae([_record("grade", g, parse_ok=False), _record("grade", score_item("grade", 1, 2))])["mean"] == 2.0


def test_stated_range_and_uniform_chance_by_hand():
    from voxqa.answers.number import stated_range, uniform_chance, unparsed_penalty

    assert stated_range([2, 5, 3]) == (0, 5) and stated_range([0, 0]) == (0, 1)
    assert stated_range([-2, 3]) == (-2, 3)
    assert unparsed_penalty((0, 5)) == 5.0 and unparsed_penalty((0, 1, 2, 3)) == 3.0
    assert uniform_chance(2, 0.0, (0, 5)) == pytest.approx(1 / 6)  # one of 0..5
    assert uniform_chance(2, 1.0, (0, 5)) == pytest.approx(3 / 6)  # 1, 2, 3
    assert uniform_chance(0, 1.0, (0, 5)) == pytest.approx(2 / 6)  # 0, 1
    assert uniform_chance(2.5, 0.5, (0.0, 10.0)) == pytest.approx(0.1)  # [2, 3] of [0, 10]


def test_chance_is_over_the_items_accuracy_covers():
    """Two yes/no items (chance 1/2) and a count on 0..5 (chance 1/6): chance (1/2 + 1/2 + 1/6)
    / 3 = 7/18 beside accuracy over the same 3 items; before, the count had no chance and the
    chance row was 1/2 over 2 items while accuracy covered 3. A box item (no accuracy) does not
    count; an accuracy item without a chance leaves chance undefined rather than partial."""
    recs = [_record("yes_no", score_item("yes_no", "yes", "yes"), chance=0.5),
            _record("yes_no", score_item("yes_no", "no", "yes"), chance=0.5),
            _record("number", score_item("number", 2, 3, scale=(0, 5)), chance=1 / 6),
            _record("boxes", score_item("boxes", [{"frame": 0, "box": [0, 0, 4, 4]}], []), chance=None)]
    out = aggregate(recs, (), n_boot=50)["overall"]
    assert out["metrics"]["accuracy"]["n"] == 3 and out["metrics"]["accuracy"]["mean"] == pytest.approx(1 / 3)
    assert out["chance"] == pytest.approx(7 / 18)
    assert out["below_chance_test"]["n"] == 3
    recs[2]["chance"] = None
    assert aggregate(recs, (), n_boot=50)["overall"]["chance"] is None


def test_every_metric_scores_unparsed_as_worst():
    """An unparseable answer never scores better than the worst parsed answer."""
    b = {"frame_start": 0, "frame_end": 1, "box": [0, 0, 4, 4]}
    cases = [("yes_no", "yes"), ("choice", 1), ("multi_choice", [0, 2]), ("number", 4.0),
             ("frames", [1, 2]), ("frames", []), ("boxes", [{"frame": 0, "box": [0, 0, 4, 4]}]),
             ("boxes", []), ("box3d", b), ("text", "Edema on frame 3.")]
    for kind, gold in cases:
        s = score_item(kind, gold, None, vocabulary=["Edema"])
        for key, v in s.items():
            if key == "gold_class" or key.startswith("fn@"):
                continue
            assert v in (0.0, None), (kind, key, v)


def test_hits_per_threshold_not_from_max_total_iou_matching():
    """Gold A [0,0,10,10], B [0,8,10,18]; pred P = A (IoU 1 with A, 20/180 = 0.111 with B),
    Q [0,0,10,2] (IoU 0.2 with A, 0 with B). Max total IoU pairs A-P (1.0) and leaves B; at
    IoU 0.1, A-Q and B-P are both hits: 2 TP. pycocotools (Q scored first) agrees."""
    gold = [{"frame": 0, "box": [0, 0, 10, 10]}, {"frame": 0, "box": [0, 8, 10, 18]}]
    pred = [{"frame": 0, "box": [0, 0, 10, 10]}, {"frame": 0, "box": [0, 0, 10, 2]}]
    assert [(i, j) for i, j, _ in match_boxes(gold, pred)] == [(0, 0)]
    s = score_item("boxes", gold, pred)
    assert (s["tp@0.1"], s["fp@0.1"], s["fn@0.1"]) == (2.0, 0.0, 0.0)
    assert (s["tp@0.25"], s["tp@0.5"]) == (1.0, 1.0)
    assert s["miou"] == pytest.approx(0.5)  # the mean IoU still uses the max-total matching
    assert score_item("boxes", gold, pred[::-1])["tp@0.1"] == 2.0  # order-independent

    def xywh(b):
        x0, y0, x1, y1 = b
        return [x0, y0, x1 - x0, y1 - y0]

    gt = COCO()
    gt.dataset = {"images": [{"id": 1, "width": 20, "height": 20}], "categories": [{"id": 1}],
                  "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                                   "bbox": xywh(g["box"]), "area": 100}
                                  for i, g in enumerate(gold)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": xywh(p["box"]), "score": sc}
                         for p, sc in zip(pred, (0.8, 0.9), strict=False)])
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.array(list(THRESHOLDS))
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    coco_tp = (ev.evalImgs[0]["dtMatches"] > 0).sum(1)
    assert list(coco_tp) == [s[f"tp@{t}"] for t in THRESHOLDS] == [2, 1, 1]


def test_groups_and_unparseable_items():
    records = [
        _record("yes_no", score_item("yes_no", "yes", "yes"), task="detection", subtask="presence",
                label="Edema", anatomy="knee", chance=0.5),
        _record("yes_no", score_item("yes_no", "no", None), parse_ok=False, task="detection",
                subtask="presence", label="Edema", chance=0.5),
        _record("frames", score_item("frames", [1, 2], [2]), task="spatial", subtask="extent",
                category="Spatial Extent & Boundaries"),
        _record("boxes", score_item("boxes", [{"frame": 1, "box": [0, 0, 4, 4]}], None),
                parse_ok=False, task="localization", subtask="extent"),
    ]
    out = aggregate(records, n_boot=50)
    assert out["overall"]["n"] == 4
    assert out["overall"]["parse_failures"] == {"count": 2, "rate": 0.5}
    assert out["overall"]["metrics"]["accuracy"]["mean"] == 0.5
    assert set(out["by"]["task/subtask"]) == {"detection/presence", "spatial/extent",
                                              "localization/extent"}
    assert set(out["by"]["label"]) == {"Edema"}
    assert set(out["by"]["anatomy"]) == {"knee"}
    assert out["by"]["category"]["Spatial Extent & Boundaries"]["metrics"]["frame_f1"]["mean"] == \
        pytest.approx(2 / 3)
    loc = out["by"]["task"]["localization"]
    assert loc["metrics"]["miou"]["mean"] == 0.0 and loc["metrics"]["recall@0.5"]["mean"] == 0.0
    assert "accuracy" not in loc["metrics"]


def test_patient_clustered_intervals_widen_when_a_patient_yields_many_items():
    """10 patients of 10 items each, a patient's items all right (5 patients) or all wrong (5):
    accuracy 0.5 over 100 items, but only 10 independent outcomes. The item-level Wilson interval
    is [0.404, 0.596]; the cluster bootstrap draws patients, and its interval is about that of 5
    of 10, far wider. Without patients there is no ci_patient."""
    recs = [_record("yes_no", score_item("yes_no", "yes", "yes" if p < 5 else "no"), chance=0.5,
                    patient=f"p{p}") for p in range(10) for _ in range(10)]
    acc = aggregate(recs, (), n_boot=2000)["overall"]["metrics"]["accuracy"]
    assert acc["ci"] == pytest.approx([0.404, 0.596], abs=1e-3)
    lo, hi = acc["ci_patient"]
    assert acc["n_patients"] == 10 and lo <= 0.25 and hi >= 0.75  # 5/10: about [0.2, 0.8]
    assert aggregate(recs, (), n_boot=2000) == aggregate(recs, (), n_boot=2000)  # seeded
    bare = [{k: v for k, v in r.items() if k != "patient"} for r in recs]
    assert "ci_patient" not in aggregate(bare, (), n_boot=50)["overall"]["metrics"]["accuracy"]
    # two patients (a small segmentation test split): no interval, not a narrow one
    two = [r | {"patient": "a" if i < 50 else "b"} for i, r in enumerate(recs)]
    acc = aggregate(two, (), n_boot=200)["overall"]["metrics"]["accuracy"]
    assert acc["ci_patient"] is None and acc["n_patients"] == 2
    # all right on 12 patients: the bootstrap alone says [1, 1]; the interval keeps Wilson's width
    right = [_record("yes_no", score_item("yes_no", "yes", "yes"), chance=0.5, patient=f"p{i % 12}") for i in range(60)]
    acc = aggregate(right, (), n_boot=200)["overall"]["metrics"]["accuracy"]
    assert acc["ci_patient"] == pytest.approx(acc["ci"]) and acc["ci"][0] < 0.95


def test_patient_clustered_intervals_match_the_item_bootstrap_with_one_item_per_patient():
    """One item per patient: the cluster bootstrap resamples exactly as the item bootstrap does
    (same seed, clusters in item order), so a bootstrapped metric's intervals are equal; for
    accuracy it is close to the Wilson interval."""
    rng = random.Random(3)
    recs = []
    for i in range(200):
        gold = rng.randrange(6)
        pred = gold if rng.random() < 0.6 else rng.randrange(6)
        recs.append(_record("number", score_item("number", gold, pred, scale=(0, 5)), chance=1 / 6,
                            patient=f"patient{199 - i:03d}"))  # ids not in item order
    m = aggregate(recs, (), n_boot=1000)["overall"]["metrics"]
    assert m["mae"]["ci_patient"] == m["mae"]["ci"] and m["mae"]["n_patients"] == 200
    assert m["accuracy"]["ci_patient"] == pytest.approx(m["accuracy"]["ci"], abs=0.02)
