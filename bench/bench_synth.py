"""Time the phantom generator on a full-size grid (512 x 512 x 300 at 0.7 x 0.7 x 1.0 mm).

Usage::

    .venv/bin/python bench/bench_synth.py [--preset calcified_metastases] [--repeat 3] [--shape 300 512 512] [--spacing 1.0 0.7 0.7] [--realism] [--thickness 2.0]

Prints wall-clock and CPU seconds per run (the best and the median) and the peak
resident memory.  Target: under 30 s wall clock on 2 cores.  ``--realism`` turns on every
:class:`calcscope.synth.Realism` item (``--thickness`` sets its slice thickness, mm).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from calcscope.synth import PRESETS, Realism, generate_phantom

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="calcified_metastases", choices=PRESETS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    ap.add_argument("--spacing", type=float, nargs=3, default=(1.0, 0.7, 0.7), metavar=("Z", "Y", "X"))
    ap.add_argument("--streaks", action="store_true")
    ap.add_argument("--realism", action="store_true", help="texture, noise z-correlation, hepatic arteries, bowel")
    ap.add_argument("--thickness", type=float, default=None, help="slice thickness, mm (with --realism)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    realism = Realism(slice_thickness_mm=args.thickness) if args.realism else None
    walls, cpus = [], []
    n_obj = 0
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        ph = generate_phantom(args.preset, seed=args.seed, shape_zyx=tuple(args.shape), spacing_zyx=tuple(args.spacing), streaks=args.streaks,
                              realism=realism)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        n_obj = len(ph.truth.objects)
        del ph
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    res = {
        "preset": args.preset, "shape_zyx": list(args.shape), "spacing_zyx": list(args.spacing), "objects": n_obj, "realism": None if realism is None else realism.as_dict(),
        "runs": args.repeat, "wall_s_best": round(min(walls), 2), "wall_s_median": round(statistics.median(walls), 2),
        "cpu_s_best": round(min(cpus), 2), "cpu_s_median": round(statistics.median(cpus), 2), "peak_rss_mib": round(peak_mib, 0),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        tag = " (realism)" if realism is not None else ""
        print(f"{args.preset}{tag} {tuple(args.shape)} at {tuple(args.spacing)} mm, {n_obj} objects: wall best {res['wall_s_best']} s, "
              f"median {res['wall_s_median']} s over {args.repeat} run(s); CPU best {res['cpu_s_best']} s; peak RSS {res['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
