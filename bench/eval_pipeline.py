"""End-to-end evaluation of ``analyze`` on phantoms: automatic liver, detection, reasoning.

Unlike the per-stage evaluations (``bench/eval_calcification.py``, ``bench/eval_lesions.py``),
which use the true liver mask, this runs the whole pipeline exactly as a user would
(automatic segmentation and phase estimate, the preset's demo context) and scores the
result against the phantom truth, including whether the top-ranked condition is the one
the preset mirrors.

Usage::

    .venv/bin/python bench/eval_pipeline.py [--seeds 0 1] [--phases portal_venous ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

#: condition the preset mirrors (knowledge-base id)
EXPECTED_TOP = {
    "calcified_metastases": "calcified_metastasis",
    "liver_metastases": "liver_metastasis",
    "isolated_calcification": "benign_calcification",
    "duct_stones": "bile_duct_stone",
    "hydatid_cyst": "hydatid_cyst",
    "schistosomiasis": "schistosomiasis",
    "tuberculosis": "hepatic_tuberculosis",
    "healed_abscess": "healed_abscess",
    "hemangioma": "hemangioma",
    "fibrolamellar": "fibrolamellar_hcc",
    "simple_cyst": "simple_cyst",
    "normal": None,
}


def main() -> None:
    from calcscope.cli._demo import DEMO_CONTEXTS
    from calcscope.evaluate import score
    from calcscope.pipeline import analyze_volume
    from calcscope.synth import PRESETS, generate_phantom

    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--phases", nargs="*", default=["non_contrast", "arterial", "portal_venous", "delayed"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    rows = []
    for preset in args.presets:
        for phase in args.phases:
            for seed in args.seeds:
                ph = generate_phantom(preset, seed=seed, phase=phase)
                t0 = time.perf_counter()
                run = analyze_volume(ph.volume, context=DEMO_CONTEXTS.get(preset), timestamp=False)
                dt = time.perf_counter() - t0
                sc = score(ph.truth, run.analysis)
                d = run.analysis.differential
                top = None if d is None or d.insufficient_evidence or not d.ranked else d.ranked[0].condition_id
                top3 = [] if d is None else [r.condition_id for r in d.ranked[:3]]
                liver = ph.organs == 1
                seg = run.masks.liver
                dice = 2 * (liver & seg).sum() / (liver.sum() + seg.sum())
                row = {
                    "preset": preset,
                    "phase": phase,
                    "seed": seed,
                    "seconds": round(dt, 2),
                    "liver_dice": round(float(dice), 3),
                    "phase_found": sc.phase_found,
                    "calc_truth": sc.calcifications.n_truth,
                    "calc_found": sc.calcifications.n_found,
                    "calc_fp": sc.calcifications.false_positives,
                    "lesion_truth": sc.lesions.n_truth,
                    "lesion_found": sc.lesions.n_found,
                    "lesion_fp": sc.lesions.false_positives,
                    "duct_truth": sc.duct_dilatation_truth,
                    "duct_found": sc.duct_dilatation_found,
                    "distribution": f"{sc.distribution_truth}/{sc.distribution_found}",
                    "expected_top": EXPECTED_TOP.get(preset),
                    "top": top,
                    "top1_ok": (top == EXPECTED_TOP.get(preset)) if EXPECTED_TOP.get(preset) else (top is None or d.insufficient_evidence),
                    "top3_ok": (EXPECTED_TOP.get(preset) in top3) if EXPECTED_TOP.get(preset) else True,
                }
                rows.append(row)
                print(
                    f"{preset:22s} {phase:13s} s{seed} {dt:5.1f}s liver {row['liver_dice']:.3f} "
                    f"calc {row['calc_found']}/{row['calc_truth']} fp {row['calc_fp']} | "
                    f"lesion {row['lesion_found']}/{row['lesion_truth']} fp {row['lesion_fp']} | "
                    f"duct {int(row['duct_truth'])}/{int(row['duct_found'])} | dist {row['distribution']} | "
                    f"top {top} {'OK' if row['top1_ok'] else 'MISS'}",
                    flush=True,
                )
    n = len(rows)
    ct = sum(r["calc_truth"] for r in rows)
    cf = sum(r["calc_found"] for r in rows)
    lt = sum(r["lesion_truth"] for r in rows)
    lf = sum(r["lesion_found"] for r in rows)
    print(f"\n{n} scans; median analyze {statistics.median(r['seconds'] for r in rows):.1f} s")
    print(f"liver Dice median {statistics.median(r['liver_dice'] for r in rows):.3f}, min {min(r['liver_dice'] for r in rows):.3f}")
    print(f"calcifications found {cf}/{ct} ({cf / max(ct, 1):.2f}); FP per scan {sum(r['calc_fp'] for r in rows) / n:.2f}")
    print(f"lesions found {lf}/{lt} ({lf / max(lt, 1):.2f}); FP per scan {sum(r['lesion_fp'] for r in rows) / n:.2f}")
    duct_ok = sum(r["duct_truth"] == r["duct_found"] for r in rows)
    print(f"duct dilatation correct {duct_ok}/{n}")
    print(f"differential top-1 as the preset mirrors {sum(r['top1_ok'] for r in rows)}/{n}; top-3 {sum(r['top3_ok'] for r in rows)}/{n}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
