"""Timing of lesion + duct detection and description on a full-size CT (512 x 512 x 300).

Builds a ``calcscope.synth`` phantom on a 300 x 512 x 512 grid (1.0 x 0.78 x 0.78 mm, portal
venous, calcified metastases by default), then times :func:`calcscope.detect.find_lesions`,
:func:`calcscope.detect.find_ducts`, :func:`calcscope.describe.describe_lesions`,
``describe_ducts`` and :func:`calcscope.describe.associate` with the true liver mask.
Target: the whole lesion stage in <= 10 s on 2 cores. Both wall-clock and process CPU time
are printed: on a shared, loaded machine the wall-clock time overstates the cost.

Usage::

    .venv/bin/python bench/bench_lesions.py [--preset calcified_metastases] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from calcscope.describe import associate, describe_ducts, describe_lesions
from calcscope.detect import find_ducts, find_lesions
from calcscope.model import Finding
from calcscope.synth import generate_phantom


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="calcified_metastases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", nargs=3, type=int, default=[300, 512, 512])
    ap.add_argument("--spacing", nargs=3, type=float, default=[1.0, 0.78, 0.78])
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    ph = generate_phantom(a.preset, seed=a.seed, shape_zyx=tuple(a.shape), spacing_zyx=tuple(a.spacing))
    t_gen = time.perf_counter() - t0
    vol, liver = ph.volume, ph.organs == 1
    calcs = [o for o in ph.truth.objects if o.type == "calcification"]
    calc_lab = np.zeros(vol.shape, np.int32)
    for n, o in enumerate(calcs, start=1):
        calc_lab[ph.objects == o.label] = n
    phase = ph.truth.phase
    runs = []
    for _ in range(a.repeat):
        t = {}
        c0 = time.process_time()
        s = time.perf_counter()
        det = find_lesions(vol, liver, phase=phase, calcifications=calc_lab)
        t["find_lesions_s"] = time.perf_counter() - s
        s = time.perf_counter()
        ducts = find_ducts(vol, liver, phase=phase, lesions=det, calcifications=calc_lab)
        t["find_ducts_s"] = time.perf_counter() - s
        s = time.perf_counter()
        lf = describe_lesions(
            vol, det.labels, liver=liver, lobes=ph.lobes, parenchyma_hu=det.parenchyma_hu, noise_hu=det.noise_hu,
            phase=phase, inner=det.inner,
        )
        df = describe_ducts(vol, ducts.mask, liver=liver, lobes=ph.lobes)
        cf = [Finding(kind="calcification", id=f"calc-{n:03d}", label=1000 + n) for n in range(1, len(calcs) + 1)]
        associate(cf, lf, df, volume=vol, calc_labels=calc_lab, lesion_labels=det.labels, duct_mask=ducts.mask)
        t["describe_associate_s"] = time.perf_counter() - s
        t["total_s"] = sum(t.values())
        t["total_cpu_s"] = time.process_time() - c0
        runs.append(t)
    best = min(runs, key=lambda r: r["total_s"])
    print(json.dumps({
        "shape_zyx": list(vol.shape), "spacing_zyx": list(vol.spacing_zyx), "preset": a.preset,
        "liver_voxels": int(liver.sum()), "lesions_found": int(det.labels.max()),
        "truth_lesions": sum(o.type == "lesion" for o in ph.truth.objects),
        "phantom_generation_s": round(t_gen, 2),
        "best_run": {k: round(v, 3) for k, v in best.items()},
        "runs": [{k: round(v, 3) for k, v in r.items()} for r in runs],
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
