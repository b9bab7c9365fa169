"""Synthetic MR-like phantom in fastMRI / fastMRI+ layout: the built-in demo and test data.

Each volume is a noisy elliptical "joint" with spherical lesions of known labels spanning
adjacent slices. Files mirror the real ones exactly:

* ``volumes/<name>.h5`` with ``reconstruction_rss`` of shape (slices, height, width), stored
  the way fastMRI stores it, i.e. up/down flipped relative to the annotated image;
* ``annotations.csv`` with ``file,slice,study_level,x,y,width,height,label`` where the box is
  the tight box of the lesion's pixels on the *flipped* image (fastMRI+ convention);
* ``file_list.csv`` listing every volume, including normal ones without rows.

A few real-world quirks are planted on purpose so the build report has something to show:
a label with a trailing space, an exact duplicate row, and a small extra box in the empty
top-left corner starting at y = -1 (clipped by the build; it sits on no planted lesion).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

# Lesion labels (knee vocabulary of fastMRI+) and their intensity relative to tissue.
LESIONS = {
    "Meniscus Tear": 0.25,
    "Joint Effusion ": 2.0,  # trailing space as in the real CSV
    "Bone- Subchondral edema": 1.7,
    "Periarticular cysts": 2.2,
    "Cartilage - Partial Thickness loss/defect": 0.4,
    "Bone - Lesion": 0.1,
    "Soft Tissue Lesion": 1.8,
    "Joint Bodies": 0.15,
}
TISSUE = 100.0


@dataclass(frozen=True)
class Lesion:
    label: str
    center: tuple[float, float, float]  # slice, row, col on the annotated (flipped) image
    radius: float  # in-plane radius in pixels
    half_span: int  # slices on each side of the centre slice


def _place_lesions(r: np.random.Generator, shape: tuple[int, int, int], n: int) -> list[Lesion]:
    """Lesions well apart in-plane, so boxes of different lesions never overlap."""
    slices, h, w = shape
    placed: list[Lesion] = []
    labels = list(LESIONS)
    for _ in range(200):
        if len(placed) == n:
            break
        radius = float(r.uniform(4, 9))
        half = int(r.integers(1, 3))
        z = float(r.integers(half + 1, slices - half - 1))
        y = float(r.uniform(0.3 * h, 0.7 * h))
        x = float(r.uniform(0.3 * w, 0.7 * w))
        if all(np.hypot(y - o.center[1], x - o.center[2]) > radius + o.radius + 6 for o in placed):
            label = labels[int(r.integers(len(labels)))]
            placed.append(Lesion(label, (z, y, x), radius, half))
    return placed


def _lesion_mask(les: Lesion, k: int, h: int, w: int) -> np.ndarray:
    dz = abs(k - round(les.center[0]))
    if dz > les.half_span:
        return np.zeros((h, w), bool)
    rad = les.radius * np.sqrt(1 - (dz / (les.half_span + 1)) ** 2)
    yy, xx = np.ogrid[:h, :w]
    return (yy - les.center[1]) ** 2 + (xx - les.center[2]) ** 2 <= rad**2


def make_volume(
    r: np.random.Generator, shape: tuple[int, int, int], lesions: list[Lesion]
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int], str]]]:
    """Image on the annotated orientation and its boxes (slice, xywh, label)."""
    slices, h, w = shape
    yy, xx = np.ogrid[:h, :w]
    body = ((yy - h / 2) / (0.42 * h)) ** 2 + ((xx - w / 2) / (0.38 * w)) ** 2 <= 1
    img = np.where(body, TISSUE, 5.0)[None].repeat(slices, 0).astype(np.float32)
    boxes = []
    for k in range(slices):
        for les in lesions:
            m = _lesion_mask(les, k, h, w)
            if not m.any():
                continue
            img[k][m] = TISSUE * LESIONS[les.label]
            rows, cols = np.nonzero(m)
            x0, y0 = int(cols.min()), int(rows.min())
            boxes.append((k, (x0, y0, int(cols.max()) + 1 - x0, int(rows.max()) + 1 - y0), les.label))
    img += r.normal(0, 4.0, img.shape).astype(np.float32)
    return np.abs(img), boxes


def write_phantom(out: Path, n: int = 12, seed: int = 0, shape=(12, 128, 128)) -> dict:
    """Write ``n`` volumes (about a quarter normal) with CSV and file list; returns paths."""
    r = np.random.default_rng(seed)
    vol_dir = out / "volumes"
    vol_dir.mkdir(parents=True, exist_ok=True)
    names = [f"file{9000000 + i}" for i in range(n)]
    rows: list[list[object]] = []
    for i, name in enumerate(names):
        normal = i % 4 == 3
        lesions = [] if normal else _place_lesions(r, shape, int(r.integers(1, 5)))
        img, boxes = make_volume(r, shape, lesions)
        with h5py.File(vol_dir / f"{name}.h5", "w") as f:
            # fastMRI stores the image up/down flipped relative to what fastMRI+ annotated.
            f.create_dataset("reconstruction_rss", data=img[:, ::-1, :])  # uncompressed, as fastMRI
        for k, (x, y, bw, bh), label in boxes:
            rows.append([name, k, "No", x, y, bw, bh, label])
    if rows:  # planted quirks: a duplicate row and a box reaching above the frame (y = -1)
        rows.append(list(rows[0]))
        # a small extra box in the empty top-left corner (outside the body, away from every
        # planted lesion), starting one row above the frame: clipped to y = 0 by the build
        name, k, *_, label = rows[0]
        rows.append([name, k, "No", 4, -1, 8, 6, label])
    if n > 1:
        rows.append([names[1], 0, "Yes", "", "", "", "", "artifact"])
    ann = out / "annotations.csv"
    with ann.open("w", newline="") as fh:
        wr = csv.writer(fh, lineterminator="\n")
        wr.writerow(["file", "slice", "study_level", "x", "y", "width", "height", "label"])
        wr.writerows(rows)
    file_list = out / "file_list.csv"
    file_list.write_text("".join(f"{name}\n" for name in names))
    return {"annotations": ann, "file_list": file_list, "volumes": vol_dir, "names": names}


# --- segmentation phantom: an abdomen-like CT with a multi-label map -------------------------

# name: (centre x, y, z in RAS+ mm; radii mm; HU). +x is the patient's right.
ORGANS = {
    "liver": ((60, 10, 30), (45, 40, 35), 60),
    "spleen": ((-70, -20, 35), (18, 25, 25), 45),
    "stomach": ((-35, 35, 45), (25, 20, 20), 10),
    "kidney_right": ((45, -40, -15), (15, 18, 28), 150),
    "kidney_left": ((-45, -40, -10), (17, 21, 32), 150),
    "aorta": ((0, -10, 0), (9, 9, 90), 200),
    "spinal_cord": ((0, -75, 0), (6, 6, 95), 30),
    "vertebrae_L1": ((0, -58, 20), (20, 14, 11), 700),
    "vertebrae_L2": ((0, -58, -8), (20, 14, 11), 700),
    "liver_lesion": ((75, 25, 40), (9, 9, 9), -10),
}
LESION_2 = ((45, -5, 15), (7, 7, 7))  # a second, separate liver lesion
SEG_SPACING = (4.0, 4.0, 5.0)
SEG_SHAPE = (60, 50, 40)


def segmentation_phantom(variant: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """(image HU, label map, RAS affine, id -> name), stored RAS (i -> patient's right).

    ``variant`` 0 is the fixed phantom of ``ORGANS``. Other variants are other "patients"
    for multi-study builds: organs moved by up to 6 mm and resized by up to 15% per axis (so
    either kidney may be the larger), and 1-3 lesions, labelled ``lesion``, in the liver or
    the spleen; what a question can ask then differs between studies as in real data.
    """
    organs = {n: v for n, v in ORGANS.items() if n != "liver_lesion"}
    lesion_name, lesions = "liver_lesion", [ORGANS["liver_lesion"][:2], LESION_2]
    if variant:
        r = np.random.default_rng(variant)
        organs = {n: (tuple(np.add(c, r.uniform(-6, 6, 3))), tuple(np.multiply(rad, r.uniform(0.85, 1.15, 3))), hu)
                  for n, (c, rad, hu) in organs.items()}
        host = organs[str(r.choice(["liver", "spleen"]))]
        lesion_name, lesions = "lesion", [
            (tuple(np.add(host[0], np.multiply(host[1], r.uniform(-0.45, 0.45, 3)))), (r.uniform(5, 8),) * 3)
            for _ in range(int(r.integers(1, 4)))
        ]
    affine = np.diag([*SEG_SPACING, 1.0])
    affine[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(SEG_SHAPE, SEG_SPACING, strict=False)]
    ii, jj, kk = np.indices(SEG_SHAPE)
    world = [affine[d, d] * idx + affine[d, 3] for d, idx in enumerate((ii, jj, kk))]

    def ellipsoid(centre, radii) -> np.ndarray:
        return sum(((w - c) / r) ** 2 for w, c, r in zip(world, centre, radii, strict=False)) <= 1

    body = ((world[0] / 115) ** 2 + (world[1] / 95) ** 2) <= 1
    image = np.where(body, -100.0, -1000.0)
    labels = np.zeros(SEG_SHAPE, np.uint8)
    names = {}
    for label_id, (name, (centre, radii, hu)) in enumerate(organs.items(), start=1):
        m = ellipsoid(centre, radii)
        labels[m] = label_id
        image[m] = hu
        names[label_id] = name
    lesion_id = len(names) + 1
    for centre, radii in lesions:
        m = ellipsoid(centre, radii)
        labels[m] = lesion_id
        image[m] = ORGANS["liver_lesion"][2]
    names[lesion_id] = lesion_name
    names[lesion_id + 1] = "gallbladder"  # named in the table, absent from the volume
    image += np.random.default_rng(variant).normal(0, 5, SEG_SHAPE)
    return image.astype(np.float32), labels, affine, names


def write_segmentation_phantom(
    out: Path, *, axes: tuple[int, int, int] = (0, 1, 2), flips: tuple[bool, bool, bool] = (
        False, False, False), mirror: bool = False, variant: int = 0
) -> dict[str, Path]:
    """Write image.nii.gz, labels.nii.gz and label_names.json.

    ``axes``/``flips`` store the same physical scan with permuted/flipped array axes and a
    matching affine (answers must not change); ``mirror`` flips the patient left-right
    while keeping the affine (every laterality answer must flip).
    """
    import json

    import nibabel as nib

    image, labels, affine, names = segmentation_phantom(variant)
    if mirror:
        image, labels = image[::-1], labels[::-1]
    image, labels, affine = _reoriented(image, labels, affine, axes, flips)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"image": out / "image.nii.gz", "labels": out / "labels.nii.gz",
             "label_names": out / "label_names.json"}
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image), affine), paths["image"])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(labels), affine), paths["labels"])
    paths["label_names"].write_text(json.dumps({str(k): v for k, v in names.items()}, indent=1))
    return paths


# --- knee phantom: sagittal knee MR with a MOAKS subregion label map and graded lesions -----------

# region: (j range (posterior -> anterior), k range (inferior -> superior)) in voxels of KNEE_SHAPE;
# the i range is the medial or lateral compartment (by knee side) or the central notch. The
# menisci are labelled by horn and body (their whole boxes are the union of those, as the knee
# source locates a meniscus); so are the osteophyte sites MOAKS names beyond the subregions.
KNEE_SHAPE = (16, 48, 48)  # RAS+: 16 sagittal frames, 48 anterior-posterior, 48 inferior-superior
KNEE_SPACING = (3.0, 1.0, 1.0)
_KNEE_BLOCKS = {
    "patella": ((38, 45), (30, 40)),
    "femur_trochlea": ((30, 38), (27, 40)),
    "femur_central": ((19, 30), (25, 36)),
    "femur_posterior": ((8, 19), (25, 40)),
    "tibia_anterior": ((28, 38), (6, 19)),
    "tibia_central": ((18, 28), (6, 19)),
    "tibia_posterior": ((8, 18), (6, 19)),
    "meniscus_posterior": ((10, 18), (20, 23)),
    "meniscus_body": ((18, 28), (20, 23)),
    "meniscus_anterior": ((28, 36), (20, 23)),
}
_KNEE_CENTRAL = {  # in the notch between the compartments
    "tibia_subspinous": ((19, 27), (12, 19)),
    "acl": ((22, 30), (24, 32)),
    "pcl": ((11, 19), (24, 32)),
    "patellar_tendon": ((40, 45), (18, 28)),
}
#: lesion kind -> which third (posterior to anterior) of its host block its mask fills
_LESION_THIRD = {"bml": 0, "cartilage": 1, "osteophyte": 2}


def _knee_grades(r: np.random.Generator) -> dict[tuple[str, str], int]:
    """(region, feature) -> a grade every table entry gets, skewed to 0 like real MOAKS grades,
    then made anatomically possible: no BML number or percent without a BML (and at least one
    BML where there is one), no full-thickness loss without cartilage loss, no progressive
    maceration at a first visit, at most one torn part per meniscus with the tear location
    naming it (3 = no tear), no hypertrophy of a macerated meniscus."""
    from voxqa.anatomy.knee import COMPOSITES, FEATURES, FOLLOW_UP_ONLY, TEAR_GRADES

    grades: dict[tuple[str, str], int] = {}
    for name in sorted(FEATURES):
        f = FEATURES[name]
        scale = [g for g in f.scale if g not in FOLLOW_UP_ONLY.get(name, ())]
        for region in f.regions:
            grades[(region, name)] = 0 if r.random() < 0.5 else int(r.choice(scale[1:]))
    for (region, name), g in list(grades.items()):
        if name in ("bml_number", "bml_percent") and grades[(region, "bml_size")] == 0:
            grades[(region, name)] = 0
        elif name == "bml_number" and g == 0:
            grades[(region, name)] = int(r.integers(1, 4))
        elif name == "cartilage_full_thickness" and grades[(region, "cartilage_size")] == 0:
            grades[(region, name)] = 0
    for meniscus in ("meniscus_medial", "meniscus_lateral"):
        torn = None
        for n, part in enumerate(COMPOSITES[meniscus]):  # anterior, body, posterior: codes 0, 1, 2
            if grades[(part, "meniscal_morphology")] in TEAR_GRADES:
                if torn is None:
                    torn = n
                else:
                    grades[(part, "meniscal_morphology")] = 1  # signal abnormality, not a second tear
        grades[(meniscus, "meniscal_tear_location")] = 3 if torn is None else torn
        if any(grades[(p, "meniscal_morphology")] >= 6 for p in COMPOSITES[meniscus]):
            grades[(meniscus, "meniscal_hypertrophy")] = 0
    return grades


def _lesion_slab(kind: str, region: str, grade: int, blocks: dict[str, tuple[tuple[int, int], ...]]
                 ) -> tuple[slice, slice, slice]:
    """Where a lesion of ``kind`` in ``region`` is drawn: a third of the region's block by
    kind (a site the label map does not name: of its first part's block), thicker with the
    grade; the patella's superior, inferior and own osteophytes share its third at the
    block's top, bottom and middle, so no mask covers another."""
    from voxqa.anatomy.knee import COMPOSITES

    host = region if region in blocks else COMPOSITES[region][0]
    (i0, i1), (j0, j1), (k0, k1) = blocks[host]
    step = (j1 - j0 - 2) // 3
    ja = j0 + 1 + _LESION_THIRD[kind] * step
    rows = slice(k0 + 1, k0 + 1 + 2 * grade)
    if host.startswith("patella") and kind == "osteophyte":
        rows = {"patella_inferior": slice(k0, k0 + 2), "patella_superior": slice(k1 - 2, k1)}.get(
            region, slice(k0 + 3, k0 + 3 + grade))
    frames = slice(i0 + 1, i1 - 1) if i1 - i0 > 2 else slice(i0, i1)  # the notch is 2 frames wide
    return frames, slice(ja, ja + step), rows


def knee_phantom(variant: int = 0, side: str = "right") -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                   dict[int, str], list[tuple[str, str, int]]]:
    """(image, label map, RAS affine, id -> name, [(region, feature, grade)]) of one knee.

    Regions are blocks shifted by up to one voxel per ``variant``; every (region, feature) of
    ``voxqa.anatomy.knee.FEATURES`` gets a grade (``_knee_grades``: skewed to 0, only
    anatomically possible combinations), and a BML, cartilage loss or osteophyte grade > 0
    gets that lesion as its own label (``<kind>_<region>``, thickness growing with the grade).
    Medial is towards the body's midline: the patient's left (low i) in a right knee, the
    right (high i) in a left knee.
    """
    from voxqa.anatomy.knee import FEATURES

    r = np.random.default_rng(1000 + variant)
    n_i = KNEE_SHAPE[0]
    medial = (2, 7) if side == "right" else (n_i - 7, n_i - 2)
    lateral = (n_i - 7, n_i - 2) if side == "right" else (2, 7)
    centre = (7, 9)
    shift = r.integers(-1, 2, 2)
    blocks: dict[str, tuple[tuple[int, int], ...]] = {}
    for base, (js, ks) in _KNEE_BLOCKS.items():
        for word, iis in (("medial", medial), ("lateral", lateral)):
            name = f"meniscus_{word}_{base.split('_')[1]}" if base.startswith("meniscus") else f"{base}_{word}"
            blocks[name] = (iis, (js[0] + shift[0], js[1] + shift[0]), (ks[0] + shift[1], ks[1] + shift[1]))
    for name, (js, ks) in _KNEE_CENTRAL.items():
        blocks[name] = (centre, js, ks)
    image = np.full(KNEE_SHAPE, 20.0)
    labels = np.zeros(KNEE_SHAPE, np.uint8)
    names: dict[int, str] = {}
    for label_id, (name, (iis, js, ks)) in enumerate(sorted(blocks.items()), start=1):
        labels[iis[0]:iis[1], js[0]:js[1], ks[0]:ks[1]] = label_id
        image[iis[0]:iis[1], js[0]:js[1], ks[0]:ks[1]] = 80.0 + 5 * (label_id % 5)
        names[label_id] = name
    graded = _knee_grades(r)
    grades = [(region, feature, graded[(region, feature)]) for feature in sorted(FEATURES)
              for region in FEATURES[feature].regions]
    lesion_value = {"bml": 220.0, "cartilage": 5.0, "osteophyte": 160.0}
    next_id = len(names) + 1
    for reg, feat, g in grades:
        kind = FEATURES[feat].lesion
        if kind is None or FEATURES[feat].presence is None or g == 0:
            continue
        sl = _lesion_slab(kind, reg, g, blocks)
        labels[sl] = next_id
        image[sl] = lesion_value[kind]
        names[next_id] = f"{kind}_{reg}"
        next_id += 1
    image += np.random.default_rng(variant).normal(0, 3, KNEE_SHAPE)
    affine = np.diag([*KNEE_SPACING, 1.0])
    affine[:3, 3] = [-(n - 1) * s / 2 for n, s in zip(KNEE_SHAPE, KNEE_SPACING, strict=False)]
    return image.astype(np.float32), labels, affine, names, grades


def _reoriented(image: np.ndarray, labels: np.ndarray, affine: np.ndarray, axes: tuple[int, int, int],
                flips: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same scan stored with flipped / permuted array axes and the matching affine."""
    for d, flip in enumerate(flips):
        if flip:
            image, labels = np.flip(image, d), np.flip(labels, d)
            shift = np.eye(4)
            shift[d, d], shift[d, 3] = -1, image.shape[d] - 1
            affine = affine @ shift
    perm = np.eye(4)[list(axes) + [3]].T
    return image.transpose(axes), labels.transpose(axes), affine @ perm


def write_knee_phantom(out: Path, n: int = 16, seed: int = 0, *, axes: tuple[int, int, int] = (0, 1, 2),
                       flips: tuple[bool, bool, bool] = (False, False, False)) -> dict[str, Path]:
    """Write ``n`` knees (patients of two knees each: right, then left) as images/, labels/,
    subregions.json, studies.csv and grades.csv; ``axes``/``flips`` store every scan in
    another array orientation (the items must not change)."""
    import json

    import nibabel as nib

    for folder in ("images", "labels"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    studies = [["study_id", "image", "labels", "patient_id", "knee_side", "label_names"]]
    grade_rows = [["study_id", "region", "feature", "grade"]]
    for v in range(n):
        side = "right" if v % 2 == 0 else "left"
        sid = f"knee{v:03d}"
        image, labels, affine, names, grades = knee_phantom(seed * 100_000 + v, side)
        image, labels, affine = _reoriented(image, labels, affine, axes, flips)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(image), affine), out / "images" / f"{sid}.nii.gz")
        nib.save(nib.Nifti1Image(np.ascontiguousarray(labels), affine), out / "labels" / f"{sid}.nii.gz")
        (out / "labels" / f"{sid}.json").write_text(json.dumps({str(k): nm for k, nm in names.items()}, indent=1))
        studies.append([sid, f"images/{sid}.nii.gz", f"labels/{sid}.nii.gz", f"patient{v // 2:03d}",
                        side.upper(), f"labels/{sid}.json"])
        grade_rows += [[sid, reg, feat, g] for reg, feat, g in grades]
    paths = {"studies": out / "studies.csv", "grades": out / "grades.csv"}
    for key, rows in (("studies", studies), ("grades", grade_rows)):
        with paths[key].open("w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(rows)
    return paths
