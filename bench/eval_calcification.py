"""Measure calcification detection and description on synthetic phantoms and real CT.

Runs ``find_calcifications`` + ``describe_calcifications`` + ``calcification_pattern``
on phantoms from ``calcscope.synth`` (every preset, several seeds, all four contrast
phases, 1 mm and 3 mm slices) with the TRUE liver mask (``organs == 1``) and a 3 mm
capsular margin, so the figures measure detection and description, not liver
segmentation. Then checks the real negative controls (the shared TotalSegmentator
example CT and its contrast DICOM series, whose livers hold no calcification; the DICOM
also read as every contrast phase, ``untouched_by_phase``) and
calcifications inserted into them with ``calcscope.synth.insert_objects``.

Figures (issue 5 targets):
* sensitivity for calcifications >= 2 mm (target >= 0.98), over all of them and over
  the resolvable ones (noise-free peak HU above the scan's threshold: a grit cluster
  of 1-2 mm particles on 3 mm slices in the portal phase never rises above the
  enhanced vessels and cannot be told from noise);
* false positives per scan (<= 0.1), normal preset in arterial and portal phase included;
* median volume error for single-piece calcifications >= 5 mm (<= 15 %), reported
  volume against the truth's partial-volume integral;
* shape agreement (>= 90 %): the majority shape word of the detections matched to a
  truth object against the truth's expected word;

A detection is matched to a truth object when it has a voxel within
:data:`MATCH_REACH_MM` of the object's labelled voxels (or, for grit, of its cluster
ball); detections matching no calcification are false positives.
* distribution class against the truth's class, per phantom, after lesion detection and
  association as the pipeline runs them (the "clustered within lesions" class needs them).

Usage::

    .venv/bin/python bench/eval_calcification.py            # full run (about 2-4 min)
    .venv/bin/python bench/eval_calcification.py --quick    # 11 presets x 1 phase
    .venv/bin/python bench/eval_calcification.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from calcscope.describe import associate, calcification_pattern, describe_calcifications, describe_ducts, describe_lesions
from calcscope.detect import find_calcifications, find_lesions_and_ducts
from calcscope.synth import PRESETS, generate_phantom

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "totalseg-example-ct"
PHASES = ("non_contrast", "arterial", "portal_venous", "delayed")
#: a detection belongs to a truth object when it comes within this distance (mm)
MATCH_REACH_MM = 2.5
#: (slice spacing, grid) for "1 mm" and "3 mm" slices, 1.5 mm pixels, same 200 mm z range
GRIDS = {
    "1mm": ((1.0, 1.5, 1.5), (200, 160, 160)),
    "3mm": ((3.0, 1.5, 1.5), (67, 160, 160)),
}


def capsular_margin(liver: np.ndarray, body: np.ndarray, spacing, mm: float = 3.0) -> np.ndarray:
    """Shell outside ``liver`` up to ``mm`` thick, inside the body."""
    dt = ndi.distance_transform_edt(~liver, sampling=spacing)
    return (dt > 0) & (dt <= mm) & body


def truth_zones(objects: np.ndarray, truth, spacing, *, reach_mm: float = MATCH_REACH_MM) -> dict[int, tuple]:
    """Per truth calcification: (box, bool zone) of voxels within ``reach_mm`` of its
    label voxels, plus, for multi-particle objects (grit), the ball of its cluster
    (particles under half a voxel of coverage are not in the label map)."""
    sp = np.asarray(spacing, float)
    pad = np.ceil(reach_mm / sp).astype(int) + 1
    zones = {}
    for o in truth:
        mask = objects == o.label
        cz = np.asarray(o.centre_voxel)
        r_vox = (o.size_mm / 2 + reach_mm) / sp if o.n_components > 1 else np.zeros(3)
        if mask.any():
            idx = np.argwhere(mask)
            lo = np.minimum(idx.min(0), np.floor(cz - r_vox).astype(int)) - pad
            hi = np.maximum(idx.max(0), np.ceil(cz + r_vox).astype(int)) + pad + 1
        else:
            lo = np.floor(cz - r_vox).astype(int) - pad
            hi = np.ceil(cz + r_vox).astype(int) + pad + 1
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, objects.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        sub = mask[box]
        if sub.any():
            zone = ndi.distance_transform_edt(~sub, sampling=sp) <= reach_mm
        else:
            zone = np.zeros(sub.shape, bool)
        if o.n_components > 1:
            g = np.indices(sub.shape).reshape(3, -1).T + lo
            d = np.sqrt((((g - cz) * sp) ** 2).sum(1)).reshape(sub.shape)
            zone |= d <= o.size_mm / 2 + reach_mm
        zones[o.label] = (box, zone)
    return zones


def match(labels: np.ndarray, zones: dict[int, tuple]) -> tuple[dict[int, list[int]], list[int]]:
    """Truth label -> detections with a voxel in its zone; detections matching nothing."""
    n = int(labels.max())
    hits: dict[int, list[int]] = defaultdict(list)
    matched = set()
    for lab_t, (box, zone) in zones.items():
        ks = np.unique(labels[box][zone])
        for k in ks[ks > 0]:
            hits[lab_t].append(int(k))
            matched.add(int(k))
    return hits, [k for k in range(1, n + 1) if k not in matched]


def _associate_as_the_pipeline(vol, liver, phase, det, calcs, lobes) -> None:
    """Lesions, ducts and calcification association as ``calcscope analyze`` runs them.

    The distribution class "clustered within lesions" needs each calcification's parent, so
    the pattern is measured after association, as in the pipeline (not timed as detection).
    """
    les, ducts = find_lesions_and_ducts(vol, liver, phase=phase, calcifications=det.labels, vessels=det.vessels)
    lf = describe_lesions(
        vol, les.labels, liver=liver, lobes=lobes, parenchyma_hu=les.parenchyma_hu, noise_hu=les.noise_hu, phase=phase,
        inner=les.inner,
    )
    df = describe_ducts(vol, ducts.mask, liver=liver, lobes=lobes)
    associate(calcs, lf, df, volume=vol, calc_labels=det.labels, lesion_labels=les.labels, duct_mask=ducts.mask)


def evaluate_phantom(preset: str, seed: int, phase: str, grid: str, *, streaks: bool = False) -> dict:
    spacing, shape = GRIDS[grid]
    t0 = time.perf_counter()
    for attempt in range(5):
        try:
            ph = generate_phantom(preset, seed=seed, shape_zyx=shape, spacing_zyx=spacing, phase=phase, streaks=streaks)
            break
        except ValueError as exc:  # the generator could not place a finding: next seed
            print(f"  generate_phantom({preset!r}, seed={seed}) failed ({exc}); trying seed {seed + 1000}", flush=True)
            seed += 1000
    else:
        raise RuntimeError(f"could not generate {preset}")
    t_gen = time.perf_counter() - t0
    vol = ph.volume
    liver = ph.organs == 1
    margin = capsular_margin(liver, ph.organs > 0, vol.spacing_zyx)
    t0 = time.perf_counter()
    det = find_calcifications(vol, liver, phase=phase, margin=margin)
    calcs = describe_calcifications(vol, det.labels, liver=liver, lobes=ph.lobes, margin=margin)
    t_assoc = time.perf_counter()
    _associate_as_the_pipeline(vol, liver, phase, det, calcs, ph.lobes)
    t_assoc = time.perf_counter() - t_assoc
    pattern = calcification_pattern(calcs, liver_volume_ml=ph.truth.liver_volume_ml)
    t_run = time.perf_counter() - t0 - t_assoc

    truth = ph.truth.calcifications
    hits, fps = match(det.labels, truth_zones(ph.objects, truth, vol.spacing_zyx))
    by_label = {f.label - 1000: f for f in calcs}
    objs = []
    for o in truth:
        ks = hits.get(o.label, [])
        found = [by_label[k] for k in ks if k in by_label]
        vol_det = float(sum(f.volume_mm3 or 0.0 for f in found))
        shape_votes = Counter()
        for f in found:  # one vote per detection, ties to the larger volume
            shape_votes[f.shape] += 1.0 + 1e-6 * (f.volume_mm3 or 0.0)
        objs.append(
            dict(
                id=o.id,
                subtype=o.subtype,
                size_mm=o.size_mm,
                hu=o.hu,
                hu_peak=o.hu_peak,
                n_components=o.n_components,
                volume_true_mm3=o.volume_pv_mm3,
                volume_det_mm3=vol_det,
                found=bool(found),
                n_detections=len(found),
                resolvable=bool((o.hu_peak or 0) > det.threshold_hu),
                shape_true=o.shape,
                shape_det=shape_votes.most_common(1)[0][0] if shape_votes else None,
                detections=[
                    dict(id=f.id, shape=f.shape, size_mm=f.size_mm, volume_mm3=f.volume_mm3, hu_max=f.hu_max,
                         depth=f.depth, **{k: v for k, v in f.measurements.items() if not k.startswith("volume")})
                    for f in found
                ],
            )
        )
    return dict(
        preset=preset,
        seed=seed,
        phase=phase,
        grid=grid,
        streaks=streaks,
        threshold_hu=round(det.threshold_hu, 1),
        rule=det.rule,
        vessel_hu=None if det.vessel_hu is None else round(det.vessel_hu, 1),
        rejected=det.rejected,
        n_detections=det.count,
        false_positives=len(fps),
        fp_details=[
            dict(id=by_label[k].id, shape=by_label[k].shape, size_mm=by_label[k].size_mm, hu_max=by_label[k].hu_max)
            for k in fps
            if k in by_label
        ],
        objects=objs,
        distribution_true=ph.truth.calcification_distribution,
        distribution_det=pattern.distribution,
        distribution_reason=pattern.reason,
        seconds_generate=round(t_gen, 2),
        seconds_detect_describe=round(t_run, 2),
    )


def plan(quick: bool) -> list[tuple[str, int, str, str, bool]]:
    """(preset, seed, phase, grid, streaks) of every phantom of the run."""
    runs = []
    if quick:
        for i, p in enumerate(PRESETS):
            runs.append((p, 100 + i, PHASES[i % 4], "3mm" if i % 2 else "1mm", False))
        return runs
    for i, p in enumerate(PRESETS):
        for j, phase in enumerate(PHASES):
            grid = "1mm" if (i + j) % 2 == 0 else "3mm"
            runs.append((p, 100 + 7 * i + j, phase, grid, False))
    # streak artefacts on a few calcified presets
    for i, p in enumerate(("tuberculosis", "calcified_metastases", "isolated_calcification")):
        runs.append((p, 900 + i, "portal_venous", "3mm", True))
    return runs


def summarise(results: list[dict]) -> dict:
    objs = [o for r in results for o in r["objects"]]
    ge2 = [o for o in objs if o["size_mm"] >= 2.0]
    ge2_res = [o for o in ge2 if o["resolvable"]]
    vol_rows = [
        o for o in objs if o["size_mm"] >= 5.0 and o["found"] and o["n_components"] == 1 and o["volume_true_mm3"] > 0
    ]
    errs = [abs(o["volume_det_mm3"] - o["volume_true_mm3"]) / o["volume_true_mm3"] for o in vol_rows]
    shaped = [o for o in objs if o["found"] and o["shape_true"]]
    agree = [o["shape_det"] == o["shape_true"] for o in shaped]
    by_shape = defaultdict(lambda: [0, 0])
    for o in shaped:
        by_shape[o["shape_true"]][0] += int(o["shape_det"] == o["shape_true"])
        by_shape[o["shape_true"]][1] += 1
    fp = [r["false_positives"] for r in results]
    normal_fp = [r["false_positives"] for r in results if r["preset"] == "normal"]
    dist_ok = [r["distribution_true"] == r["distribution_det"] for r in results]
    missed = [
        (r["preset"], r["phase"], r["grid"], o["id"], o["size_mm"], o["hu_peak"], r["threshold_hu"])
        for r in results
        for o in r["objects"]
        if o["size_mm"] >= 2 and not o["found"]
    ]
    shape_miss = [
        (r["preset"], r["phase"], r["grid"], o["id"], o["shape_true"], o["shape_det"])
        for r in results
        for o in r["objects"]
        if o["found"] and o["shape_true"] and o["shape_det"] != o["shape_true"]
    ]
    dist_miss = [
        (r["preset"], r["phase"], r["grid"], r["distribution_true"], r["distribution_det"], r["distribution_reason"])
        for r in results
        if r["distribution_true"] != r["distribution_det"]
    ]
    return dict(
        phantoms=len(results),
        calcifications=len(objs),
        sensitivity_ge2mm=round(float(np.mean([o["found"] for o in ge2])), 4) if ge2 else None,
        n_ge2mm=len(ge2),
        sensitivity_ge2mm_resolvable=round(float(np.mean([o["found"] for o in ge2_res])), 4) if ge2_res else None,
        n_ge2mm_resolvable=len(ge2_res),
        false_positives_per_scan=round(float(np.mean(fp)), 3),
        false_positives_total=int(np.sum(fp)),
        normal_false_positives=int(np.sum(normal_fp)),
        median_volume_error_ge5mm=round(float(np.median(errs)), 4) if errs else None,
        n_volume=len(errs),
        shape_agreement=round(float(np.mean(agree)), 4) if agree else None,
        n_shape=len(agree),
        shape_agreement_by_class={k: f"{v[0]}/{v[1]}" for k, v in sorted(by_shape.items())},
        distribution_correct=f"{sum(dist_ok)}/{len(dist_ok)}",
        missed_ge2mm=missed,
        shape_mismatches=shape_miss,
        distribution_mismatches=dist_miss,
        max_seconds_detect_describe=max(r["seconds_detect_describe"] for r in results),
    )


# ----------------------------------------------------------------------------------------
# real CT
# ----------------------------------------------------------------------------------------


def _real_cases():
    from calcscope.io import load_ct, load_mask_like

    cases = []
    if (DATA / "example_ct.nii.gz").exists():
        v = load_ct(DATA / "example_ct.nii.gz")
        liver = load_mask_like(DATA / "example_seg_fast_force_split.nii.gz", v) == 5
        cases.append(("example_ct (non-contrast, 3 mm)", v, liver, "non_contrast"))
    if (DATA / "example_ct_dicom").is_dir():
        v = load_ct(DATA / "example_ct_dicom")
        liver = load_mask_like(DATA / "example_seg_dicom.nii.gz", v) == 5
        cases.append(("example_ct_dicom (contrast, 3 mm / 2 mm spacing)", v, liver, "portal_venous"))
    return cases


def _insert_specs(seed: int):
    from calcscope.synth import ObjectSpec

    rng = np.random.default_rng(seed)
    specs = []
    for i, st in enumerate(["punctate", "punctate", "coarse", "coarse", "linear", "punctate"]):
        size = {"punctate": float(rng.uniform(2.0, 4.0)), "coarse": float(rng.uniform(5.0, 10.0)), "linear": float(rng.uniform(8.0, 14.0))}[st]
        specs.append(ObjectSpec(type="calcification", subtype=st, size_mm=round(size, 1), hu=float(rng.uniform(400, 800))))
    return specs


def evaluate_real() -> list[dict]:
    try:
        from calcscope.synth import insert_objects
    except ImportError:  # insertion not available yet
        insert_objects = None
    out = []
    for name, v, liver, phase in _real_cases():
        margin = capsular_margin(liver, v.array > -500, v.spacing_zyx)
        det = find_calcifications(v, liver, phase=phase, margin=margin)
        row = dict(case=name, phase=phase, threshold_hu=round(det.threshold_hu, 1), rule=det.rule,
                   untouched_detections=det.count, rejected=det.rejected)
        if phase != "non_contrast":  # the contrast scan read as every contrast phase
            row["untouched_by_phase"] = {
                p: find_calcifications(v, liver, phase=p, margin=margin).count for p in PHASES[1:] + ("unknown",)
            }
        if insert_objects is not None:
            found, total, fps, res_total, res_found = 0, 0, 0, 0, 0
            for seed in (1, 2, 3):
                v2, labels, objs = insert_objects(v, liver, _insert_specs(seed), seed=seed)
                det2 = find_calcifications(v2, liver, phase=phase, margin=margin)
                calc_objs = [o for o in objs if o.type == "calcification" and o.size_mm >= 2]
                hits, fp = match(det2.labels, truth_zones(labels, calc_objs, v.spacing_zyx))
                for o in calc_objs:
                    hit = bool(hits.get(o.label))
                    total += 1
                    found += hit
                    if (o.hu_peak or 0) > det2.threshold_hu:
                        res_total += 1
                        res_found += hit
                fps += len(fp)
            row.update(
                inserted_ge2mm=total, inserted_found=found,
                inserted_resolvable=res_total, inserted_resolvable_found=res_found,
                inserted_false_positives=fps,
            )
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one phantom per preset")
    ap.add_argument("--json", type=Path, help="write every figure and per-phantom row here")
    ap.add_argument("--no-real", action="store_true", help="skip the real-CT checks")
    ap.add_argument("--real-only", action="store_true", help="only the real-CT checks")
    args = ap.parse_args(argv)
    if args.real_only:
        for row in evaluate_real():
            print(json.dumps(row))
        return 0
    results = []
    for preset, seed, phase, grid, streaks in plan(args.quick):
        r = evaluate_phantom(preset, seed, phase, grid, streaks=streaks)
        results.append(r)
        n_found = sum(o["found"] for o in r["objects"])
        print(
            f"{preset:24s} {phase:13s} {grid} seed={seed:<4d} thr={r['threshold_hu']:6.1f} ({r['rule']}) "
            f"found {n_found}/{len(r['objects'])} fp={r['false_positives']} "
            f"dist {r['distribution_true']}->{r['distribution_det']}  {r['seconds_detect_describe']:.2f}s",
            flush=True,
        )
    summary = summarise(results)
    print(json.dumps({k: v for k, v in summary.items()}, indent=1, default=str))
    real = [] if args.no_real else evaluate_real()
    for row in real:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(dict(summary=summary, phantoms=results, real=real), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
