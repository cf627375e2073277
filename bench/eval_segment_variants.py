"""Liver segmentation on variants of one real abdomen: contrast phases, fatty liver, field of view.

The shared non-contrast example CT (``../shared/data/totalseg-example-ct``) comes with a
TotalSegmentator label map of the whole abdomen. Its real anatomy is turned into scans the
project has no real example of, with known truth:

* **contrast phases**: each organ label gets a typical enhancement over its non-contrast HU
  (``ENHANCEMENT_HU``; smoothed by 0.7 voxel so label edges are partial-volume ramps);
* **fatty liver**: the liver label is lowered by 10-30 HU (0 HU = the scan as it is);
* **field of view**: only the lower or the upper half of the liver in the scan;
* **noise**: Gaussian noise added (low-dose scan);
* **large hypodense masses** (``--masses``): spheres of 40-80 mm painted into the liver (metastasis
  HU: 55 in portal venous, 28 without contrast, with 12 HU noise), centred on the liver surface or
  15 mm or more inside it; measured: the share of the mass inside the automatic liver mask and whether
  ``analyze`` reports a finding whose centroid lies in the mass, with the automatic mask and with the
  liver label plus the mass given as the mask (what a user mask or TotalSegmentator would provide);
* **cysts inside the liver** (``--cysts``): 40 and 50 mm fluid balls (10 HU, 12 HU noise), simple
  or with a 2 mm 450 HU eggshell wall, centred where the liver (the scan's edge counting as its
  surface) is deeper than the radius + 3 mm, two placements; measured: the share inside the
  automatic mask, the findings ``analyze`` reports within 10 mm of the centre, the number of
  other findings and the first condition of the differential.
* **many metastases** (``--metastases``): 8 non-overlapping spheres of 12-40 mm (12 HU noise)
  painted into the liver label (centres deeper than a quarter of the diameter), as in a liver
  riddled with deposits, at several contrasts (portal venous 55 / 70 / 80 HU in a 97 HU liver,
  non-contrast 20 / 28 HU in a 47 HU liver), two random draws each; measured: Dice of the
  automatic mask against the liver label plus the spheres, the share of each sphere inside the
  mask, how many spheres ``analyze`` reports (a finding whose centroid lies in the sphere; by size:
  12-20 mm and over 20 mm), the findings elsewhere and the first condition of the differential.

For each variant: Dice and volume difference of the automatic mask against the liver label,
the share of neighbouring organ labels inside the mask (> 2 % listed), the phase estimate with
its aorta and liver readings, and whether ``automatic_mask_warnings`` tells the reader to
check the mask. Limits: the enhancement is constant per label (intrahepatic vessels are part
of the liver label and enhance like parenchyma; bowel content and unlabelled tissue do not
change), and a fatty liver's vessels are lowered with it.

Usage (from the repository root; about 1 minute)::

    .venv/bin/python bench/eval_segment_variants.py [--json out.json] [--masses] [--cysts] [--metastases]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
TS = ROOT.parent / "shared" / "data" / "totalseg-example-ct"

#: organ -> TotalSegmentator labels (class map "total")
ORGANS = {
    "spleen": [1], "kidney": [2, 3], "gallbladder": [4], "stomach+bowel": [6, 18, 19, 20], "pancreas": [7],
    "aorta": [52, 65, 66], "ivc": [63, 67, 68], "portal": [64], "muscle": list(range(80, 90)),
}
#: phase -> organ -> enhancement over the non-contrast scan (HU), typical adult values
ENHANCEMENT_HU = {
    "non_contrast": {},
    "arterial": {"liver": 15, "spleen": 70, "kidney": 130, "pancreas": 70, "aorta": 260, "ivc": 20, "portal": 70,
                 "muscle": 5, "stomach+bowel": 15},
    "portal_venous": {"liver": 50, "spleen": 65, "kidney": 130, "pancreas": 55, "aorta": 130, "ivc": 100,
                      "portal": 140, "muscle": 10, "stomach+bowel": 20},
    "delayed": {"liver": 35, "spleen": 40, "kidney": 90, "pancreas": 35, "aorta": 70, "ivc": 65, "portal": 60,
                "muscle": 10, "stomach+bowel": 15},
}
LIVER = 5


def load_case():
    """The non-contrast example CT and its label map on the CT grid."""
    from calcscope.io import load_ct

    vol = load_ct(TS / "example_ct.nii.gz")
    lab = sitk.ReadImage(str(TS / "example_seg_fast_force_split.nii.gz"))
    lab = sitk.Resample(lab, vol.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return vol, sitk.GetArrayFromImage(lab)


def _volume_like(vol, arr: np.ndarray, tag: str, z: slice | None = None):
    from calcscope.model import Volume

    img = vol.to_sitk()
    if z is not None:
        img = img[:, :, z.start:z.stop]
    out = sitk.GetImageFromArray(np.round(arr).astype(np.int16))
    out.CopyInformation(img)
    return Volume.from_sitk(out, modality="CT", source=tag)


def make_variant(vol, labels: np.ndarray, phase: str, fat_hu: float = 0.0, noise_hu: float = 0.0,
                 fov: str = "full", seed: int = 0):
    """(volume, labels) of one variant; ``fov`` in {"full", "lower_liver", "upper_liver"}."""
    a = vol.array.astype(np.float32)
    d = np.zeros(a.shape, np.float32)
    for organ, dh in ENHANCEMENT_HU[phase].items():
        d[np.isin(labels, [LIVER] if organ == "liver" else ORGANS[organ])] = dh
    d[labels == LIVER] -= fat_hu
    a += ndi.gaussian_filter(d, 0.7)
    if noise_hu:
        a += np.random.default_rng(seed).normal(0.0, noise_hu, a.shape).astype(np.float32)
    z = None
    if fov != "full":
        zs = np.nonzero((labels == LIVER).any(axis=(1, 2)))[0]
        mid = int((zs[0] + zs[-1]) // 2)
        # array slice 0 is the scan's first slice; which end is superior follows the header
        sup_last = vol.to_sitk().TransformIndexToPhysicalPoint((0, 0, a.shape[0] - 1))[2] > vol.to_sitk().GetOrigin()[2]
        lower = slice(0, mid) if sup_last else slice(mid, a.shape[0])
        upper = slice(mid, a.shape[0]) if sup_last else slice(0, mid)
        z = lower if fov == "lower_liver" else upper
        a, labels = a[z], labels[z]
    return _volume_like(vol, a, f"{phase} fat-{fat_hu:g} noise-{noise_hu:g} {fov}", z), labels


def evaluate(vol, labels: np.ndarray) -> dict:
    from calcscope.segment import automatic_mask_warnings, estimate_phase, segment_liver

    seg = segment_liver(vol)
    m, ref = seg.mask, labels == LIVER
    ph = estimate_phase(vol, m)
    inside = {}
    for organ, ids in ORGANS.items():
        o = np.isin(labels, ids)
        if o.any():
            share = float((m & o).sum() / o.sum())
            if share > 0.02:
                inside[organ] = round(share, 3)
    return dict(
        dice=round(float(2 * (m & ref).sum() / (m.sum() + ref.sum())), 4),
        volume_diff=round(float(m.sum() / ref.sum() - 1), 3),
        phase_read=ph.phase.value, aorta_hu=ph.aorta_hu, liver_hu=ph.liver_hu,
        neighbours_inside=inside,
        warned=bool(automatic_mask_warnings(seg.summary.method, ph)),
    )


def _distance_mm(shape: tuple[int, ...], centre_zyx, sp: np.ndarray) -> np.ndarray:
    """Distance (mm) of every voxel of a grid of ``shape`` from ``centre_zyx`` (voxel indices)."""
    zz, yy, xx = np.indices(shape)
    return np.sqrt(((zz - centre_zyx[0]) * sp[0]) ** 2 + ((yy - centre_zyx[1]) * sp[1]) ** 2 + ((xx - centre_zyx[2]) * sp[2]) ** 2)


def paint_mass(vol, centre_zyx, diameter_mm: float, hu: float, seed: int):
    """The CT with a sphere of ``hu`` (+12 HU noise, 1 mm partial-volume edge) and its mask."""
    sp = np.asarray(vol.spacing_zyx)
    a = vol.array.astype(np.float32)
    d = _distance_mm(a.shape, centre_zyx, sp)
    w = np.clip(0.5 * diameter_mm + 0.5 - d, 0.0, 1.0)
    a = a * (1 - w) + (hu + np.random.default_rng(seed).normal(0.0, 12.0, a.shape)) * w
    return _volume_like(vol, a, f"mass {diameter_mm:g} mm"), w > 0.5


def mass_rows(vol, labels: np.ndarray, seed: int = 0) -> list[dict]:
    """Large hypodense masses in the non-contrast and synthetic portal-venous abdomen."""
    from calcscope.pipeline import analyze_volume

    ref = labels == LIVER
    depth = ndi.distance_transform_edt(ref, sampling=vol.spacing_zyx)
    zs = np.nonzero(ref.any(axis=(1, 2)))[0]
    zi = np.arange(ref.shape[0])[:, None, None]
    # away from the scan's first/last liver slices so the sphere stays in the scan
    mid = (zi > zs[0] + 6) & (zi < zs[-1] - 7)
    where = {"surface": np.argwhere((depth > 0) & (depth < 4) & mid), "inside": np.argwhere((depth > 15) & mid)}
    rng = np.random.default_rng(seed)
    rows = []
    for phase, hu in (("portal_venous", 55.0), ("non_contrast", 28.0)):
        base, _ = make_variant(vol, labels, phase)
        for place, diameter in (("surface", 40.0), ("surface", 60.0), ("inside", 60.0), ("inside", 80.0)):
            pts = where[place]
            c = pts[rng.integers(len(pts))]
            v, mass = paint_mass(base, c, diameter, hu, int(rng.integers(1 << 16)))
            res = analyze_volume(v, timestamp=False, phase=phase)
            given = analyze_volume(v, timestamp=False, phase=phase, liver_mask=ref | mass)
            rows.append(dict(phase=phase, place=place, diameter_mm=diameter, centre_zyx=[int(x) for x in c],
                             outside_liver_label=round(float((mass & ~ref).sum() / mass.sum()), 3),
                             inside_mask=round(float((mass & res.masks.liver).sum() / mass.sum()), 3),
                             reported_as=_kinds_in(res.analysis.findings, mass),
                             reported_with_true_mask=_kinds_in(given.analysis.findings, mass)))
    return rows


def paint_cyst(vol, centre_zyx, radius_mm: float, wall: bool, seed: int):
    """The CT with a fluid ball (10 HU + 12 HU noise, 1 mm partial-volume edge), with a 2 mm
    450 HU eggshell wall when ``wall``, and the mask of its fluid."""
    sp = np.asarray(vol.spacing_zyx)
    a0 = vol.array.astype(np.float32)
    d = _distance_mm(a0.shape, centre_zyx, sp)
    w_in = np.clip(radius_mm + 0.5 - d, 0.0, 1.0)
    w_out = np.clip(radius_mm + 2.5 - d, 0.0, 1.0)
    fluid = 10.0 + np.random.default_rng(seed).normal(0.0, 12.0, a0.shape)
    a = a0 * (1 - w_out) + fluid * w_in + (450.0 if wall else a0) * (w_out - w_in)
    return _volume_like(vol, a, "cyst"), w_in > 0.5


def cyst_rows(vol, labels: np.ndarray) -> list[dict]:
    """40 and 50 mm cysts (simple and eggshell) inside the liver, two placements each, both phases."""
    from calcscope.pipeline import analyze_volume

    ref = labels == LIVER
    sp = np.asarray(vol.spacing_zyx)
    # distance to the liver's surface, the scan's edge counting as surface
    depth = ndi.distance_transform_edt(np.pad(ref, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    zs = np.nonzero(ref.any(axis=(1, 2)))[0]
    zi = np.arange(ref.shape[0])[:, None, None]
    rows = []
    for radius in (20.0, 25.0):
        nz = int(np.ceil(radius / sp[0])) + 1
        pts = np.argwhere((depth > radius + 3.0) & (zi >= zs[0] + nz) & (zi <= zs[-1] - nz))
        for seed in (0, 1):
            c = pts[np.random.default_rng(seed).integers(len(pts))]
            for phase in ("non_contrast", "portal_venous"):
                base, _ = make_variant(vol, labels, phase)
                for wall in (False, True):
                    v, cyst = paint_cyst(base, c, radius, wall, seed + 7)
                    res = analyze_volume(v, timestamp=False, phase=phase)
                    near = [f for f in res.analysis.findings if f.kind in ("cyst", "lesion") and f.centroid_voxel is not None
                            and np.linalg.norm((np.asarray(f.centroid_voxel) - c) * sp) < 10.0]
                    top = res.analysis.differential.ranked[0].condition_id if res.analysis.differential and res.analysis.differential.ranked else None
                    rows.append(dict(phase=phase, diameter_mm=2 * radius, wall="eggshell" if wall else "none",
                                     centre_zyx=[int(x) for x in c], inside_mask=round(float((cyst & res.masks.liver).sum() / cyst.sum()), 3),
                                     reported_as=[f"{f.kind} {f.size_mm:.0f} mm" for f in near],
                                     other_findings=len(res.analysis.findings) - len(near), top=top))
    return rows


def paint_metastases(vol, labels: np.ndarray, hu: float, seed: int, n: int = 8):
    """The CT with ``n`` non-overlapping spheres of ``hu`` (12-40 mm, 12 HU noise, 1 mm edge)
    centred in the liver label deeper than a quarter of their diameter, and their masks."""
    ref = labels == LIVER
    sp = np.asarray(vol.spacing_zyx)
    depth = ndi.distance_transform_edt(np.pad(ref, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
    rng = np.random.default_rng(seed)
    a = vol.array.astype(np.float32)
    taken = np.zeros(a.shape, bool)
    spheres: list[tuple[float, np.ndarray]] = []
    for _ in range(500):
        if len(spheres) == n:
            break
        dmm = float(rng.uniform(12.0, 40.0))
        pts = np.argwhere(ref & (depth > 0.25 * dmm))
        c = pts[rng.integers(len(pts))]
        d = _distance_mm(a.shape, c, sp)
        if (taken & (d < 0.5 * dmm + 3.0)).any():
            continue
        w = np.clip(0.5 * dmm + 0.5 - d, 0.0, 1.0)
        a = a * (1 - w) + (hu + rng.normal(0.0, 12.0, a.shape)) * w
        taken |= d < 0.5 * dmm + 3.0
        spheres.append((dmm, w > 0.5))
    return _volume_like(vol, a, f"metastases {hu:g} HU"), spheres


def metastases_rows(vol, labels: np.ndarray) -> list[dict]:
    """Eight metastases at several contrasts, both phases, two draws each."""
    from calcscope.pipeline import analyze_volume

    ref = labels == LIVER
    rows = []
    for phase, levels in (("portal_venous", (55.0, 70.0, 80.0)), ("non_contrast", (20.0, 28.0))):
        base, _ = make_variant(vol, labels, phase)
        for hu in levels:
            for seed in (0, 1):
                v, spheres = paint_metastases(base, labels, hu, seed)
                res = analyze_volume(v, timestamp=False, phase=phase)
                m = res.masks.liver
                truth = ref | np.any([s for _, s in spheres], axis=0)
                hit = [bool(_kinds_in(res.analysis.findings, s)) for _, s in spheres]
                inside = [float((s & m).sum() / s.sum()) for _, s in spheres]
                on = np.any([s for _, s in spheres], axis=0)
                elsewhere = sum(1 for f in res.analysis.findings if f.kind in ("lesion", "cyst") and not _kinds_in([f], on))
                d = res.analysis.differential
                rows.append(dict(
                    phase=phase, hu=hu, seed=seed,
                    dice=round(float(2 * (m & truth).sum() / (m.sum() + truth.sum())), 4),
                    inside_min=round(min(inside), 3), inside_median=round(float(np.median(inside)), 3),
                    found_12_20=f"{sum(h for (dm, _), h in zip(spheres, hit) if dm <= 20)}/{sum(dm <= 20 for dm, _ in spheres)}",
                    found_over_20=f"{sum(h for (dm, _), h in zip(spheres, hit) if dm > 20)}/{sum(dm > 20 for dm, _ in spheres)}",
                    kinds=sorted({k for _, s in spheres for k in _kinds_in(res.analysis.findings, s)}),
                    lesions_elsewhere=elsewhere,
                    top=d.ranked[0].condition_id if d and d.ranked and not d.insufficient_evidence else None,
                    leading=d.ranked[0].condition_id if d and d.ranked else None,
                ))
    return rows


def _kinds_in(findings, mass: np.ndarray) -> list[str]:
    """Kinds of the findings whose centroid lies in ``mass``."""
    out = []
    for f in findings:
        if f.centroid_voxel is None:
            continue
        k = tuple(int(np.clip(round(x), 0, n - 1)) for x, n in zip(f.centroid_voxel, mass.shape))
        if mass[k]:
            out.append(f.kind)
    return out


VARIANTS = (
    [(ph, f, 0.0, "full") for ph in ENHANCEMENT_HU for f in (0.0, 10.0, 20.0, 30.0)]
    + [("non_contrast", f, 0.0, "full") for f in (3.0, 5.0, 7.0)]
    + [(ph, 0.0, 25.0, "full") for ph in ("non_contrast", "portal_venous")]
    + [(ph, 0.0, 0.0, fov) for ph in ("non_contrast", "portal_venous") for fov in ("lower_liver", "upper_liver")]
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the rows as JSON")
    ap.add_argument("--masses", action="store_true", help="also insert large hypodense masses (about 1 more minute)")
    ap.add_argument("--cysts", action="store_true", help="also insert cysts inside the liver (about 1 more minute)")
    ap.add_argument("--metastases", action="store_true", help="also insert eight metastases at several contrasts (about 1 more minute)")
    args = ap.parse_args(argv)
    if not TS.is_dir():
        print(f"shared data not found at {TS}", file=sys.stderr)
        return 2
    vol, labels = load_case()
    rows = []
    print("| phase | liver lowered (HU) | noise (HU) | field of view | Dice | volume | phase read | aorta / liver HU | neighbours inside | warned |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for phase, fat, noise, fov in sorted(VARIANTS, key=lambda v: (list(ENHANCEMENT_HU).index(v[0]), v[3], v[2], v[1])):
        v, lab = make_variant(vol, labels, phase, fat, noise, fov)
        r = dict(phase=phase, fat_hu=fat, noise_hu=noise, fov=fov, **evaluate(v, lab))
        rows.append(r)
        nb = ", ".join(f"{k} {100 * x:.0f} %" for k, x in r["neighbours_inside"].items()) or "-"
        a = "-" if r["aorta_hu"] is None else f"{r['aorta_hu']:.0f}"
        li = "-" if r["liver_hu"] is None else f"{r['liver_hu']:.0f}"
        print(f"| {phase} | {fat:g} | {noise:g} | {fov} | {r['dice']:.3f} | {100 * r['volume_diff']:+.1f} % | {r['phase_read']} | {a} / {li} | {nb} | {'yes' if r['warned'] else 'no'} |", flush=True)
    extra = []
    if args.masses:
        extra.append((["phase", "mass", "diameter", "outside the liver label", "inside the automatic mask",
                       "reported (automatic mask)", "reported (liver label + mass as mask)"], mass_rows, lambda r: [
            r["phase"], r["place"], f"{r['diameter_mm']:g} mm", f"{100 * r['outside_liver_label']:.0f} %",
            f"{100 * r['inside_mask']:.0f} %", ", ".join(r["reported_as"]) or "nothing",
            ", ".join(r["reported_with_true_mask"]) or "nothing"]))
    if args.cysts:
        extra.append((["phase", "cyst", "wall", "centre (z, y, x)", "inside the automatic mask", "reported at the cyst",
                       "other findings", "first in the differential"], cyst_rows, lambda r: [
            r["phase"], f"{r['diameter_mm']:g} mm", r["wall"], str(tuple(r["centre_zyx"])), f"{100 * r['inside_mask']:.0f} %",
            ", ".join(r["reported_as"]) or "nothing", str(r["other_findings"]), str(r["top"])]))
    if args.metastases:
        extra.append((["phase", "metastases HU", "draw", "Dice (liver + metastases)", "inside the mask (min / median)",
                       "reported 12-20 mm", "reported > 20 mm", "reported as", "lesions elsewhere", "leading condition"],
                      metastases_rows, lambda r: [
            r["phase"], f"{r['hu']:g}", str(r["seed"]), f"{r['dice']:.3f}",
            f"{100 * r['inside_min']:.0f} / {100 * r['inside_median']:.0f} %", r["found_12_20"], r["found_over_20"],
            ", ".join(r["kinds"]) or "-", str(r["lesions_elsewhere"]),
            f"{r['leading']}" + ("" if r["top"] else " (insufficient evidence)") if r["leading"] else "-"]))
    for header, make_rows, cells in extra:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in make_rows(vol, labels):
            rows.append(r)
            print("| " + " | ".join(cells(r)) + " |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
