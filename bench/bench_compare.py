"""Speed of ``compare`` on two already-analysed large studies (default 512 x 512 x 300).

Usage::

    .venv/bin/python bench/bench_compare.py [--shape 300 512 512] [--spacing 1.0 0.7 0.7] [--no-ct] [--deformable]

The prior is a synthetic phantom (:func:`calcscope.synth.generate_phantom`, preset
``calcified_metastases``); the current is the same CT and label map resampled through
a rigid motion (3 degrees, 6 mm) with SimpleITK. Both are written as analysed-study
folders (``analysis.json`` with findings measured from the label map,
``segmentation.nii.gz``, and the CT beside them unless ``--no-ct``), exactly what
``calcscope analyze --out`` leaves. Only ``compare_studies`` + ``write_comparison``
(loading both folders, registration, matching, report) is timed: wall time, CPU time
of this process, and the per-stage timings recorded in ``comparison.json``.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _findings_from_labels(labels: np.ndarray, volume):
    """Findings (volume, convex-hull diameter, centroid) of every 100+n / 1000+n label."""
    from scipy import ndimage
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    from calcscope.model import CALC_LABEL_BASE, LESION_LABEL_BASE, Finding

    values = [int(v) for v in np.unique(labels) if v > LESION_LABEL_BASE]
    slices = ndimage.find_objects(labels.astype(np.int32))
    out = []
    for v in values:
        sl = slices[v - 1]
        if sl is None:
            continue
        idx = np.argwhere(labels[sl] == v) + np.array([s.start for s in sl])
        pts = volume.voxel_to_mm(idx.astype(float))
        try:
            hull = pts[ConvexHull(pts).vertices] if len(pts) >= 5 else pts
        except Exception:
            hull = pts
        diam = max(float(pdist(hull).max()) if len(hull) > 1 else 0.0, min(volume.spacing_zyx))
        c = idx.mean(axis=0)
        calc = v > CALC_LABEL_BASE
        n = v - (CALC_LABEL_BASE if calc else LESION_LABEL_BASE)
        out.append(Finding(
            id=f"{'calc' if calc else 'lesion'}-{n:03d}", kind="calcification" if calc else "lesion", label=v,
            volume_mm3=len(idx) * volume.voxel_volume_mm3, longest_diameter_mm=diam, size_mm=diam,
            centroid_voxel=tuple(float(x) for x in c), centroid_mm=tuple(float(x) for x in volume.voxel_to_mm(c)),
        ))
    return out


def _write_folder(folder: Path, volume, labels: np.ndarray, *, keep_ct: bool) -> None:
    import SimpleITK as sitk

    from calcscope.model import Analysis, InputInfo

    folder.mkdir(parents=True)
    ct_name = f"{folder.name}_ct.nii.gz"
    if keep_ct:
        sitk.WriteImage(volume.to_sitk(), str(folder.parent / ct_name))
    sitk.WriteImage(volume.to_sitk(labels.astype(np.uint16)), str(folder / "segmentation.nii.gz"), True)
    analysis = Analysis(
        input=InputInfo(path=ct_name, sha256="0" * 64, modality="CT", shape_zyx=volume.shape,
                        spacing_zyx_mm=volume.spacing_zyx, origin_lps_mm=volume.origin_lps,
                        orientation=volume.orientation_code()),
        findings=_findings_from_labels(labels, volume),
    )
    (folder / "analysis.json").write_text(analysis.model_dump_json(indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512))
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.0, 0.7, 0.7))
    ap.add_argument("--preset", default="calcified_metastases")
    ap.add_argument("--no-ct", action="store_true", help="leave the CTs out (registration on the liver masks)")
    ap.add_argument("--deformable", action="store_true")
    args = ap.parse_args()

    import SimpleITK as sitk

    from calcscope.model import CALC_LABEL_BASE, LESION_LABEL_BASE
    from calcscope.synth import generate_phantom
    from calcscope.track import compare_studies, write_comparison

    t0 = time.perf_counter()
    ph = generate_phantom(args.preset, seed=0, shape_zyx=tuple(args.shape), spacing_zyx=tuple(args.spacing))
    labels = np.zeros(ph.volume.shape, np.uint16)
    labels[ph.organs == 1] = 1
    n_les = n_calc = 0
    for o in sorted(ph.truth.objects, key=lambda o: o.centre_voxel):
        if o.type == "lesion":
            n_les += 1
            labels[ph.objects == o.label] = LESION_LABEL_BASE + n_les
    for o in sorted(ph.truth.objects, key=lambda o: o.centre_voxel):
        if o.type == "calcification":
            n_calc += 1
            labels[ph.objects == o.label] = CALC_LABEL_BASE + n_calc
    vol = ph.volume
    del ph
    # current: the prior seen through a rigid motion about the liver centre
    tx = sitk.Euler3DTransform()
    centre = vol.voxel_to_mm(np.argwhere(labels == 1).mean(axis=0))
    tx.SetCenter(tuple(float(c) for c in centre))
    tx.SetRotation(np.deg2rad(2.0), np.deg2rad(-1.5), np.deg2rad(3.0))
    tx.SetTranslation((6.0, -4.0, 3.0))
    ref = vol.to_sitk()
    cur_ct = sitk.GetArrayFromImage(sitk.Resample(ref, ref, tx, sitk.sitkLinear, -1000.0, sitk.sitkInt16))
    cur_lab = sitk.GetArrayFromImage(sitk.Resample(vol.to_sitk(labels), ref, tx, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt16))
    t_make = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write_folder(root / "prior", vol, labels, keep_ct=not args.no_ct)
        _write_folder(root / "current", vol.with_array(cur_ct), cur_lab, keep_ct=not args.no_ct)
        del cur_ct, cur_lab, labels
        print(f"phantoms {args.shape} made and written in {time.perf_counter() - t0:.1f} s "
              f"(generation + resampling {t_make:.1f} s)", flush=True)
        w0, c0 = time.perf_counter(), time.process_time()
        run = compare_studies(root / "prior", root / "current", deformable=args.deformable, timestamp=False)
        write_comparison(root / "out", run)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        c = run.comparison
        print(f"compare + write: wall {wall:.1f} s, CPU {cpu:.1f} s; stages {c.timings_s}")
        print(f"registration: {c.registration.image_kind}, liver Dice {c.registration.liver_dice_before:.3f} -> "
              f"{c.registration.liver_dice_after:.3f}; {len(c.matches)} matched, {len(c.new)} new, "
              f"{len(c.resolved)} resolved of {c.prior.findings}/{c.current.findings} findings")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
