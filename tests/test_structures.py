"""Structure geometry from label maps and masks, label names, and segmentation loading.

Synthetic volumes check every quantity against what was constructed (and ``measure`` against
the one-mask-per-label ``naive_measure``); real-data tests check anatomy and the published
voxel counts of the shared datasets.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from voxqa.errors import BuildError
from voxqa.anatomy.frames import axial_frame
from voxqa.anatomy.labelnames import (
    canonical_name,
    header_label_names,
    midline,
    pair_of,
    read_json_names,
    side_of,
)
from voxqa.sources.segmentation import load_segmentation
from voxqa.anatomy.structures import Structure, measure, measure_masks, naive_measure

SHAPE = (20, 16, 12)
# RAS+ but oblique (10 degrees about z), anisotropic, shifted: nothing cancels by accident.
_C, _S = np.cos(np.radians(10)), np.sin(np.radians(10))
AFFINE = np.array([
    [0.75 * _C, -1.25 * _S, 0.0, -30.0],
    [0.75 * _S, 1.25 * _C, 0.0, 12.5],
    [0.0, 0.0, 2.5, 40.0],
    [0.0, 0.0, 0.0, 1.0],
])
VOXEL_MM3 = 0.75 * 1.25 * 2.5


def ras(ijk) -> np.ndarray:
    return AFFINE[:3, :3] @ np.asarray(ijk, dtype=float) + AFFINE[:3, 3]


def assert_same(a: list[Structure], b: list[Structure]) -> None:
    """Equal Structures: integers and boxes exactly, world floats to rounding."""
    assert [s.label_id for s in a] == [s.label_id for s in b]
    for x, y in zip(a, b, strict=False):
        dx, dy = dataclasses.asdict(x), dataclasses.asdict(y)
        for key in ("centroid_ras", "bbox_ras_min", "bbox_ras_max", "volume_ml"):
            assert np.allclose(dx.pop(key), dy.pop(key), rtol=1e-9, atol=1e-6), (x.name, key)
        assert dx == dy, x.name


@pytest.fixture()
def synthetic() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[12:17, 2:6, 4:9] = 3  # box at high i: the patient's right
    ii, jj, kk = np.indices(SHAPE)
    labels[(ii - 5) ** 2 + (jj - 10) ** 2 + (kk - 6) ** 2 <= 9] = 7  # ball of radius 3 at (5, 10, 6)
    labels[0, 15, 11] = 9  # one voxel in a corner
    return labels


# --- synthetic: measure ---------------------------------------------------------------------


def test_box_structure_exactly_as_constructed(synthetic):
    by_id = {s.label_id: s for s in measure(synthetic, AFFINE, {3: "box", 7: "ball", 42: "absent"})}
    assert sorted(by_id) == [3, 7, 9]  # absent 42 ignored, unnamed 9 still measured
    box = by_id[3]
    assert box.name == "box" and by_id[9].name == "label_9"
    assert box.voxels == 5 * 4 * 5
    assert box.volume_ml == pytest.approx(100 * VOXEL_MM3 / 1000)
    assert box.bbox_vox == (12, 2, 4, 17, 6, 9)
    assert np.allclose(box.centroid_ras, ras((14, 3.5, 6)))
    corners = np.array([ras((i, j, k)) for i in (12, 16) for j in (2, 5) for k in (4, 8)])
    assert np.allclose(box.bbox_ras_min, corners.min(axis=0))
    assert np.allclose(box.bbox_ras_max, corners.max(axis=0))
    # Frame convention: x = n_i - 1 - i, y = n_j - 1 - j; high i (patient's right) -> small x.
    assert box.frame_boxes == {k: (20 - 17, 16 - 6, 20 - 12, 16 - 2) for k in range(4, 9)}
    assert box.frames == [4, 5, 6, 7, 8]
    assert box.components is None


def test_frame_boxes_cover_exactly_the_drawn_structure(synthetic):
    """The box must frame the structure's pixels on the image ``axial_frame`` renders."""
    for s in measure(synthetic, AFFINE, {}):
        for k, (x0, y0, x1, y1) in s.frame_boxes.items():
            on_frame = axial_frame(synthetic, k) == s.label_id
            ys, xs = np.nonzero(on_frame)
            assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert set(s.frame_boxes) == {k for k in range(SHAPE[2]) if (synthetic[:, :, k] == s.label_id).any()}


def test_ball_and_single_voxel(synthetic):
    by_id = {s.label_id: s for s in measure(synthetic, AFFINE, {}, components_for=[9])}
    ball = by_id[7]
    offsets = np.indices((7, 7, 7)).reshape(3, -1) - 3
    assert ball.voxels == int(((offsets ** 2).sum(axis=0) <= 9).sum())
    assert np.allclose(ball.centroid_ras, ras((5, 10, 6)))  # symmetric ball: centre exactly
    assert ball.bbox_vox == (2, 7, 3, 9, 14, 10)
    dot = by_id[9]
    assert (dot.voxels, dot.bbox_vox) == (1, (0, 15, 11, 1, 16, 12))
    assert dot.frame_boxes == {11: (19, 0, 20, 1)}  # i = 0 is the patient's left: right edge
    assert np.allclose(dot.centroid_ras, ras((0, 15, 11)))
    assert dot.bbox_ras_min == dot.bbox_ras_max == pytest.approx(dot.centroid_ras)
    assert dot.components is not None and [c.voxels for c in dot.components] == [1]


def test_empty_and_invalid_label_maps():
    assert measure(np.zeros(SHAPE, np.uint8), AFFINE, {1: "x"}) == []
    with pytest.raises(ValueError, match="negative"):
        measure(np.full(SHAPE, -1, np.int16), AFFINE, {})
    with pytest.raises(ValueError, match="integer"):
        measure(np.zeros(SHAPE, np.float32), AFFINE, {})


def random_label_map(seed: int, shape=(48, 40, 32), n_labels=100) -> np.ndarray:
    """Overlapping random ellipsoids plus scattered voxels: fragmented, touching labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    grid = np.indices(shape)
    for label in rng.permutation(np.arange(1, n_labels + 1)):
        centre = rng.uniform(0, shape)
        radii = rng.uniform(1, 9, 3)
        labels[(((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(axis=0) <= 1] = label
    speckle = rng.random(shape) < 0.02
    labels[speckle] = rng.integers(1, n_labels + 1, int(speckle.sum()))
    return labels


def test_measure_equals_naive_reference():
    labels = random_label_map(3)
    names = {i: f"s{i}" for i in range(1, 120)}
    expected = naive_measure(labels, AFFINE, names)
    assert len(expected) >= 95
    assert_same(measure(labels, AFFINE, names), expected)
    assert_same(measure(np.asfortranarray(labels), AFFINE, names), expected)  # memory order
    assert_same(measure(labels.astype(np.uint8), AFFINE, names), expected)


def test_large_label_ids_are_renumbered_transparently():
    labels = random_label_map(4, shape=(24, 20, 16), n_labels=30).astype(np.int64)
    labels[labels > 0] += 10**9
    first = int(labels[labels > 0].min())
    names = {first: "first"}
    found = measure(labels, AFFINE, names, components_for=[first])
    assert (found[0].label_id, found[0].name) == (first, "first") and found[0].components
    assert_same([dataclasses.replace(s, components=None) for s in found], naive_measure(labels, AFFINE, names))


def test_components_of_separate_blobs():
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:3, 1:3, 1:3] = 4  # 8 voxels
    labels[10:13, 8:11, 5:8] = 4  # 27 voxels, separate
    labels[13, 11, 8] = 4  # touches the big blob at a corner only: 26-connected to it
    labels[5, 5, 5] = 2
    by_id = {s.label_id: s for s in measure(labels, AFFINE, {}, components_for=[4])}
    assert by_id[2].components is None
    big, small = by_id[4].components
    assert (big.voxels, small.voxels) == (28, 8)
    assert big.bbox_vox == (10, 8, 5, 14, 12, 9)  # full-volume coordinates, not the crop's
    assert small.bbox_vox == (1, 1, 1, 3, 3, 3)
    assert np.allclose(small.centroid_ras, ras((1.5, 1.5, 1.5)))
    assert by_id[4].voxels == 36


def test_overlapping_masks():
    a = np.zeros(SHAPE, bool)
    a[2:8, 2:8, 2:8] = True
    b = np.zeros(SHAPE, np.uint8)
    b[5:10, 5:10, 5:10] = 1  # overlaps a
    found = measure_masks({"b": b, "a": a, "empty": np.zeros(SHAPE, bool)}, AFFINE, components_for=["b"])
    assert [(s.label_id, s.name, s.voxels) for s in found] == [(1, "a", 216), (2, "b", 125)]
    assert found[0].components is None and [c.voxels for c in found[1].components] == [125]
    alone = measure(b, AFFINE, {1: "b"}, components_for=[1])
    assert_same([dataclasses.replace(found[1], label_id=1)], alone)


# --- label names ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "canonical"), [
    ("Liver", "liver"), ("liver", "liver"), ("hepar", "liver"),
    ("kidney_right", "kidney_right"), ("right kidney", "kidney_right"), ("Kidney R", "kidney_right"),
    ("Thoracic spine", "thoracic_spine"), ("left adrenal", "adrenal_gland_left"),
    ("L2 vertebra", "vertebrae_L2"), ("vertebrae_L2", "vertebrae_L2"), ("rib 7 left", "rib_left_7"),
    ("rib_left_7", "rib_left_7"), ("left_coronary_cusp", "left_coronary_cusp"),
    ("Some New-Structure", "some_new_structure"),
])
def test_canonical_name(raw, canonical):
    assert canonical_name(raw) == canonical
    assert canonical_name(canonical) == canonical


def test_sides_pairs_and_midline():
    assert (side_of("Kidney R"), pair_of("Kidney R")) == ("right", "kidney_left")
    assert pair_of("lung_upper_lobe_left") == "lung_upper_lobe_right"
    assert pair_of("rib_right_7") == "rib_left_7"
    assert pair_of("autochthon_left") == "autochthon_right"
    assert (side_of("liver"), pair_of("liver")) == (None, None)
    assert all(midline(n) for n in ("aorta", "spinal_cord", "vertebrae_T12", "sacrum", "Thoracic spine"))
    assert not any(midline(n) for n in ("liver", "kidney_left", "heart", "iliopsoas_right"))


def test_json_label_names(tmp_path):
    good = tmp_path / "names.json"
    good.write_text('{"1": "liver", "2": "Kidney R", "3": "x"}')
    assert read_json_names(good) == {1: "liver", 2: "Kidney R", 3: "x"}
    for text in ('{"1": "liver",', '{"one": "liver"}', '{"-1": "liver"}', '{"1": 5}', '["liver"]'):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(BuildError, match=re.escape(str(bad))):
            read_json_names(bad)


# --- loading --------------------------------------------------------------------------------


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_reoriented_files_give_identical_structures(tmp_path):
    """One physical label volume stored RAS, permuted+flipped (NIfTI) and LPS (NRRD)."""
    labels = random_label_map(5, shape=(30, 24, 18), n_labels=40).astype(np.uint8)
    image = np.random.default_rng(0).normal(size=labels.shape).astype(np.float32)
    affine = np.array([[0.75, 0, 0, -10.5], [0, 1.25, 0, 20.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
    n_i = labels.shape[0]
    # stored[a, b, c] = labels[n_i - 1 - b, c, a]: axes permuted (k, i, j) and i flipped.
    to_ras = np.array([[0, -1, 0, n_i - 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)

    def permuted(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(2, 0, 1)[:, ::-1, :])

    results = []
    for tag, lab, img, aff in (("ras", labels, image, affine), ("perm", permuted(labels), permuted(image),
                                                               affine @ to_ras)):
        seg = load_segmentation(save_nifti(tmp_path / f"img_{tag}.nii.gz", img, aff),
                                save_nifti(tmp_path / f"lab_{tag}.nii.gz", lab, aff))
        assert np.array_equal(seg.labels, labels)
        results.append(seg.measure())
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # NRRD in LPS space, same voxel order
    header = {"space": "left-posterior-superior", "space directions": lps[:3, :3].T, "space origin": lps[:3, 3]}
    nrrd.write(str(tmp_path / "img.nrrd"), image, header)
    nrrd.write(str(tmp_path / "lab.nrrd"), labels, header)
    results.append(load_segmentation(tmp_path / "img.nrrd", tmp_path / "lab.nrrd").measure())
    assert len(results[0]) == 40
    for other in results[1:]:
        assert_same(other, results[0])


def test_mask_folder_and_float_labels(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    a = np.zeros(SHAPE, np.uint8)
    a[2:8, 2:8, 2:8] = 1
    b = np.zeros(SHAPE, np.float32)
    b[5:10, 5:10, 5:10] = 255.0  # float, one non-zero value: still a mask
    save_nifti(masks / "Liver.nii.gz", a, AFFINE)
    save_nifti(masks / "right kidney.nii.gz", b, AFFINE)
    (masks / "notes.txt").write_text("ignored")
    image = save_nifti(tmp_path / "img.nii.gz", np.zeros(SHAPE, np.int16), AFFINE)
    seg = load_segmentation(image, masks)
    assert seg.labels is None and sorted(seg.masks) == ["kidney_right", "liver"]
    assert (seg.names, seg.raw_names) == ({1: "kidney_right", 2: "liver"}, {1: "right kidney", 2: "Liver"})
    assert [(s.label_id, s.name, s.voxels) for s in seg.measure()] == [(1, "kidney_right", 125), (2, "liver", 216)]
    assert seg.modality_hint is None and seg.spacing == pytest.approx((0.75, 1.25, 2.5), abs=1e-6)

    float_map = save_nifti(tmp_path / "float.nii.gz", (a * 3).astype(np.float32), AFFINE)
    assert [s.label_id for s in load_segmentation(image, float_map).measure()] == [3]
    fractional = save_nifti(tmp_path / "frac.nii.gz", a * np.float32(0.5), AFFINE)
    with pytest.raises(BuildError, match="non-integer"):
        load_segmentation(image, fractional)
    two_values = save_nifti(masks / "two.nii.gz", a + (b > 0), AFFINE)
    with pytest.raises(BuildError, match=re.escape(str(two_values))):
        load_segmentation(image, masks)


def test_grid_mismatch_names_both_files(tmp_path):
    image = save_nifti(tmp_path / "img.nii.gz", np.zeros(SHAPE, np.int16), AFFINE)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.0
    for name, data, aff in (("shape.nii.gz", np.zeros((20, 16, 11), np.uint8), AFFINE),
                            ("moved.nii.gz", np.zeros(SHAPE, np.uint8), shifted)):
        labels = save_nifti(tmp_path / name, data, aff)
        with pytest.raises(BuildError) as err:
            load_segmentation(image, labels)
        assert str(image) in str(err.value) and str(labels) in str(err.value)


# --- real data ------------------------------------------------------------------------------


def source_counts(source_md: Path, section: str) -> dict[str, int]:
    """``id:name(voxels)`` entries of one section ("CT" or "MR") of the TotalSegmentator SOURCE.md."""
    text = source_md.read_text().split("Labels present")[1]
    ct, mr = text.split("MR (`total_mr`)")
    return {name: int(n) for _, name, n in re.findall(r"(\d+):(\w+)\((\d+)\)", ct if section == "CT" else mr)}


@pytest.mark.realdata
@pytest.mark.parametrize(("image", "seg", "class_map", "section"), [
    ("example_ct_sm.nii.gz", "example_seg.nii.gz", "class_map_total.json", "CT"),
    ("example_mr_sm.nii.gz", "example_seg_mr.nii.gz", "class_map_total_mr.json", "MR"),
])
def test_totalsegmentator(shared_data, image, seg, class_map, section):
    root = shared_data / "totalsegmentator"
    expected_names = {int(k): v for k, v in json.loads((root / class_map).read_text()).items()}
    assert header_label_names(root / seg) == expected_names
    data = load_segmentation(root / image, root / seg)
    assert data.raw_names == expected_names and data.names == expected_names  # already canonical
    found = {s.name: s for s in data.measure(components_for=["lung_middle_lobe_right"])}
    counts = source_counts(root / "SOURCE.md", section)
    for name, voxels in counts.items():
        assert found[name].voxels == voxels, name
        assert found[name].volume_ml == pytest.approx(voxels * 27 / 1000), name
    assert len(found) == {"CT": 41, "MR": 23}[section]
    x = {name: s.centroid_ras[0] for name, s in found.items()}
    assert x["liver"] > x["spleen"] and x["kidney_right"] > x["kidney_left"]  # patient's right = +x
    assert x["autochthon_right"] > x["autochthon_left"]
    assert found["liver"].centroid_ras[1] > found["spinal_cord"].centroid_ras[1]  # cord is posterior
    assert_same(data.measure(), naive_measure(data.labels, data.affine, data.names))
    if section == "CT":
        dot = found["lung_middle_lobe_right"]
        assert dot.voxels == 1 and len(dot.frame_boxes) == 1 and len(dot.components) == 1
        (x0, y0, x1, y1), = dot.frame_boxes.values()
        assert (x1 - x0, y1 - y0) == (1, 1)


@pytest.mark.realdata
def test_totalsegmentator_names_are_canonical(shared_data):
    tasks = json.loads((shared_data / "totalsegmentator" / "class_map_all_tasks.json").read_text())["tasks"]
    names = {n for table in tasks.values() for n in table.values()}
    assert [n for n in sorted(names) if canonical_name(n) != n] == []


@pytest.mark.realdata
def test_mismatched_image_and_labels(shared_data):
    root = shared_data / "totalsegmentator"
    with pytest.raises(BuildError) as err:
        load_segmentation(root / "example_ct_sm.nii.gz", root / "example_seg_mr.nii.gz")
    assert "example_ct_sm.nii.gz" in str(err.value) and "example_seg_mr.nii.gz" in str(err.value)
    assert "(117, 91, 20)" in str(err.value) and "(122, 101, 30)" in str(err.value)


def ring_contrast(frame: np.ndarray, box: tuple[int, int, int, int], margin: int) -> tuple[float, float]:
    """(mean inside the box, mean in a ring ``margin`` pixels wide around it)."""
    x0, y0, x1, y1 = box
    outer = np.zeros(frame.shape, bool)
    outer[max(y0 - margin, 0):y1 + margin, max(x0 - margin, 0):x1 + margin] = True
    inner = np.zeros(frame.shape, bool)
    inner[y0:y1, x0:x1] = True
    return float(frame[inner].mean()), float(frame[outer & ~inner].mean())


@pytest.mark.realdata
def test_pyradiomics_brain_lesion(shared_data):
    root = shared_data / "pyradiomics"
    seg = load_segmentation(root / "brain1_image.nrrd", root / "brain1_label.nrrd")
    (lesion,) = seg.measure()
    assert lesion.voxels == 4137
    # SOURCE.md box [162,84,11]-[208,153,17] (inclusive, on disk); the file is L-A-S, so i flips.
    assert lesion.bbox_vox == (255 - 208, 84, 11, 255 - 162 + 1, 154, 18)
    assert lesion.frames == list(range(11, 18))
    for k, box in lesion.frame_boxes.items():
        inside, ring = ring_contrast(axial_frame(seg.image.data, k).astype(float), box, margin=8)
        assert inside > 1.15 * ring, k  # enhancing lesion
    assert lesion.centroid_ras[0] < 0  # i flipped: the lesion is in the patient's left hemisphere


@pytest.mark.realdata
def test_dcmqi_ct_liver_spine_heart(shared_data):
    root = shared_data / "dcmqi_ct3slice"
    liver_seg = load_segmentation(root / "ct", root / "liver_seg.nrrd")
    assert liver_seg.modality_hint == "CT" and liver_seg.names == {}
    (liver,) = liver_seg.measure()
    assert (liver.name, liver.voxels, liver.frames) == ("label_1", 107098, [0, 1, 2])
    for k, (x0, y0, x1, y1) in liver.frame_boxes.items():
        frame = axial_frame(liver_seg.image.data, k)
        in_box = frame[y0:y1, x0:x1]
        outside = np.ones(frame.shape, bool)
        outside[y0:y1, x0:x1] = False
        # The box also holds fat and air beside the liver (mean ~ -100 HU), but the liver
        # fills most of it, so the median is soft tissue.
        assert 0 < np.median(in_box) < 80, k
        assert in_box.mean() - frame[outside].mean() > 500, k
    (spine,) = load_segmentation(root / "ct", root / "spine_seg.nrrd").measure()
    (heart,) = load_segmentation(root / "ct", root / "heart_seg.nrrd").measure()
    assert (spine.label_id, spine.voxels, heart.label_id, heart.voxels) == (2, 12439, 3, 41449)
    assert spine.centroid_ras[1] < liver.centroid_ras[1] - 50  # spine is posterior (-y)
    assert liver.centroid_ras[0] > heart.centroid_ras[0]  # liver on the right, heart to the left
    named = load_segmentation(root / "ct", root / "liver_spine_seg.nrrd",
                              root / "seg-example_multiple_segments.json")
    assert named.names == {1: "liver", 2: "thoracic_spine", 3: "heart"}
    assert [(s.name, s.voxels) for s in named.measure()] == [("liver", 107098), ("thoracic_spine", 12439)]
