"""Liver segmentation benchmark: speed/peak memory on a 512x512x300 CT and accuracy on all cases.

Usage (from the repository root)::

    .venv/bin/python bench/bench_segment.py speed      # real CT resampled to 0.7 x 0.7 x 1.0 mm (512x512x~300)
    .venv/bin/python bench/bench_segment.py accuracy   # Dice / volume difference, real cases and phantoms
    .venv/bin/python bench/bench_segment.py figure     # docs/img/segmentation_worst_slice.png

Speed runs in a fresh process per repeat so that peak RSS (ru_maxrss) is the segmentation's own.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TS = DATA / "totalseg-example-ct"
DCMQI = DATA / "dcmqi-ct3slice-liver"

REAL = [
    ("non-contrast NIfTI (3 mm, 112 slices)", TS / "example_ct.nii.gz", TS / "example_seg_fast_force_split.nii.gz", 5),
    ("contrast DICOM (20 slices)", TS / "example_ct_dicom", TS / "example_seg_dicom.nii.gz", 5),
    ("dcmqi 3 slices at the dome", DCMQI / "ct-3slice", DCMQI / "liver_seg.nrrd", 1),
]


def _big_volume():
    """The non-contrast example CT resampled (linear) to 0.7 x 0.7 mm in-plane, 1.0 mm slices, 512 x 512 in-plane."""
    import SimpleITK as sitk

    from calcscope.io import load_ct
    from calcscope.model import Volume

    vol = load_ct(TS / "example_ct.nii.gz")
    img = vol.to_sitk()
    size = img.GetSize()
    sp = img.GetSpacing()
    new_sp = (0.7, 0.7, 1.0)
    new_size = [512, 512, int(round(size[2] * sp[2] / new_sp[2]))]
    res = sitk.Resample(img, new_size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), new_sp, img.GetDirection(), -1024, sitk.sitkInt16)
    return Volume.from_sitk(res, modality="CT", source="example_ct resampled")


def _one_speed_run() -> dict:
    from calcscope.segment import segment_liver

    vol = _big_volume()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t = time.perf_counter()
    seg = segment_liver(vol, capsular_margin_mm=3.0)
    dt = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return {
        "shape_zyx": list(vol.shape),
        "seconds_segment_liver": round(dt, 2),
        "cpu_seconds": round(cpu, 2),
        "load_average_1min": round(__import__("os").getloadavg()[0], 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
        "rss_before_mib": round(rss0 / 1024, 0),
        "liver_ml": seg.summary.volume_ml,
    }


def speed(repeats: int = 3) -> None:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, __file__, "_speed_once"], capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(json.dumps(runs, indent=1))
    print("median seconds:", float(np.median([r["seconds_segment_liver"] for r in runs])))


def _dice(a, b) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def accuracy(seeds=(0, 1, 2)) -> None:
    from calcscope.io import load_ct, load_mask_like
    from calcscope.segment import estimate_phase, segment_liver

    rows = []
    for name, ct, ref, label in REAL:
        vol = load_ct(ct)
        truth = load_mask_like(ref, vol) == label
        t = time.perf_counter()
        seg = segment_liver(vol)
        dt = time.perf_counter() - t
        est = estimate_phase(vol, seg.mask)
        vd = (seg.mask.sum() - truth.sum()) / truth.sum() * 100
        rows.append((name, _dice(seg.mask, truth), vd, dt, est.phase.value, est.aorta_hu, "", ""))
    from calcscope import synth

    for phase in ("non_contrast", "arterial", "portal_venous", "delayed"):
        for seed in seeds:
            ph = synth.generate_phantom("calcified_metastases", seed=seed, phase=phase)
            truth = ph.organs == 1
            t = time.perf_counter()
            seg = segment_liver(ph.volume)
            dt = time.perf_counter() - t
            est = estimate_phase(ph.volume, seg.mask)
            vd = (seg.mask.sum() - truth.sum()) / truth.sum() * 100
            keep = seg.mask | seg.margin
            inside = sum(bool(keep[tuple(int(round(c)) for c in o.centre_voxel)]) for o in ph.truth.objects)
            ivc = ph.organs == synth.ORGAN_LABELS["ivc"]
            rows.append((f"phantom {phase} seed {seed}", _dice(seg.mask, truth), vd, dt, est.phase.value, est.aorta_hu,
                         f"{inside}/{len(ph.truth.objects)}", f"{(seg.mask & ivc).sum() / ivc.sum() * 100:.0f} %"))
    print("| case | Dice | volume difference | time (s) | phase estimate | aorta HU read | findings inside | IVC inside |")
    print("|---|---|---|---|---|---|---|---|")
    for name, d, vd, dt, ph, aorta, inside, ivc in rows:
        print(f"| {name} | {d:.3f} | {vd:+.1f} % | {dt:.1f} | {ph} | {aorta} | {inside} | {ivc} |")


def figure(out: Path = ROOT / "docs" / "img" / "segmentation_worst_slice.png") -> None:
    """Worst axial slice (lowest per-slice Dice among slices with > 2 cm^2 of liver) of the worst real case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from calcscope.io import load_ct, load_mask_like
    from calcscope.segment import segment_liver
    from calcscope.segment._grid import to_canonical

    worst = None
    for name, ct, ref, label in REAL:
        vol = load_ct(ct)
        truth = load_mask_like(ref, vol) == label
        seg = segment_liver(vol)
        can = to_canonical(vol)
        t, m, a = can.from_native(truth), can.from_native(seg.mask), can.array
        px = can.spacing_zyx[1] * can.spacing_zyx[2]
        for z in range(t.shape[0]):
            if t[z].sum() * px < 200:
                continue
            d = _dice(m[z], t[z])
            if worst is None or d < worst[0]:
                worst = (d, name, z, a[z].copy(), t[z].copy(), m[z].copy(), _dice(seg.mask, truth))
    d, name, z, img, t, m, dcase = worst
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(np.clip(img, -160, 240), cmap="gray")
    ax.contour(t, [0.5], colors="red", linewidths=1.2)
    ax.contour(m, [0.5], colors="cyan", linewidths=1.2)
    ax.set_title(f"{name}, slice {z}: slice Dice {d:.3f} (case {dcase:.3f})\nred = reference, cyan = calcscope")
    ax.axis("off")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, bbox_inches="tight")
    print(out.relative_to(ROOT), name, z, round(d, 3))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else "speed"
    if cmd == "_speed_once":
        print(json.dumps(_one_speed_run()))
    elif cmd == "speed":
        speed()
    elif cmd == "accuracy":
        accuracy()
    elif cmd == "figure":
        figure()
    else:
        raise SystemExit(f"unknown command {cmd!r}")
