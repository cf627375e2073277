"""Full ``analyze`` on a large portal-phase phantom: per-stage timings, floor and peak RSS.

Usage::

    .venv/bin/python bench/bench_analyze.py [--shape 300 512 512] [--spacing 1.0 0.7 0.7]

Prints the per-stage timings of the pipeline, the "floor" (time to load the volume and make
one pass over it), the wall time of analyze and the peak resident memory of this process.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512))
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.0, 0.7, 0.7))
    ap.add_argument("--preset", default="calcified_metastases")
    args = ap.parse_args()

    from calcscope.io import load_ct
    from calcscope.pipeline import analyze
    from calcscope.report import write_outputs
    from calcscope.synth import generate_phantom, write_phantom

    t0 = time.perf_counter()
    ph = generate_phantom(args.preset, seed=0, shape_zyx=tuple(args.shape), spacing_zyx=tuple(args.spacing), phase="portal_venous")
    t_gen = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        write_phantom(ph, Path(tmp) / "in")
        ct = Path(tmp) / "in" / "ct.nii.gz"
        del ph
        t0 = time.perf_counter()
        vol = load_ct(ct)
        arr = vol.array
        _ = float(np.count_nonzero(arr > 130)) + float(arr.mean())  # one pass over the voxels
        floor = time.perf_counter() - t0
        del vol, arr
        t0 = time.perf_counter()
        c0 = time.process_time()
        run = analyze(ct, timestamp=False)
        t_an = time.perf_counter() - t0
        c_an = time.process_time() - c0
        t0 = time.perf_counter()
        write_outputs(Path(tmp) / "out", run.analysis, run.volume, run.masks)
        t_rep = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"grid {tuple(args.shape)} spacing {tuple(args.spacing)} mm, preset {args.preset}")
    print(f"phantom generation {t_gen:.2f} s (not part of analyze)")
    print(f"floor (load + one pass) {floor:.2f} s")
    for k, v in run.timings_s.items():
        print(f"  stage {k:15s} {v:6.2f} s")
    print(f"analyze wall {t_an:.2f} s (CPU {c_an:.2f} s); report writing {t_rep:.2f} s; total {t_an + t_rep:.2f} s")
    print(f"findings: {len(run.analysis.findings)}; peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main()
