"""Accuracy of ``calcscope compare`` on synthetic follow-up pairs with known truth.

Usage::

    .venv/bin/python bench/eval_compare.py [--pairs 16] [--findings pipeline|truth] [--liver truth|auto]
                                            [--json results.json]

Each pair is a prior phantom and a current phantom of the same anatomy
(:func:`calcscope.synth.generate_phantom` with the same anatomy seed) seen through a
random rigid motion (rotation up to 5 degrees per axis, translation up to 10 mm per
axis), plus a mild smooth deformation (peak 2-3 mm) in the "deform" scenarios. The
findings are placed at the same anatomical positions with the same shape seeds and
changed per scenario, cycled over the pair index:

====================  ===============================================================
scenario              change (truth RECIST category)
====================  ===============================================================
rigid_stable          nothing (SD)
deform_stable         nothing, deformable motion (SD)
growth                lesions +40 % diameter, a calcification +60 % (PD), growth alert
shrinkage             lesions -45 % diameter (PR)
new_lesion            a 15 mm lesion appears (PD)
vanished              every lesion disappears, calcifications stay (CR)
small_increase        the only target 12 -> 14.8 mm: +23 % but +2.8 mm (SD, 5 mm rule)
deform_growth         lesions +30 % diameter under deformable motion (PD)
====================  ===============================================================

Findings come from the full pipeline (``--findings pipeline``, default; liver mask from
the phantom with ``--liver truth`` so that segmentation errors do not enter) or are
oracle findings taken from the truth table (``--findings truth``: centre, longest
diameter and partial-volume integral of each placed object; the voxel-count volume of a
4-6 mm calcification changes by 20-75 % between two voxelisations, so it is no oracle),
which isolates registration, matching and RECIST logic from detection and measurement. Detected findings
are attributed to truth objects by position (nearest truth centre within
max(4 mm, 0.6 x size)). Reported figures:

* registration: landmark error (portal/hepatic-vein branch points, liver dome... that
  lie within 15 mm of the prior liver), median over all pairs;
* matching: fraction of correct decisions over detected, attributed findings (paired
  with the finding of the same truth object when that object was detected on the other
  study, left unpaired otherwise);
* volume change: |measured - true| percentage points for correctly paired findings
  of truth size >= 5 mm on both studies (true change from the analytic volumes);
* calibration of the volume-change noise SD (``volume_change_sd_percent``, lesions and
  calcifications): share of errors within 2 SD and rms(error / SD), over all findings
  and per kind (``volume_change_by_kind``); calcifications are also calibrated over
  every correctly paired focus whatever its size (``calcification_changes_all_sizes``);
* RECIST: category from the comparison vs the category computed from the truth
  diameters; growth alerts vs the scenario.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass

import numpy as np

SCENARIOS = (
    "rigid_stable",
    "deform_stable",
    "growth",
    "shrinkage",
    "new_lesion",
    "vanished",
    "small_increase",
    "deform_growth",
)
PRIOR_DATE = dt.date(2024, 1, 15)
CURRENT_DATE = dt.date(2024, 5, 14)  # 120 days


@dataclass
class Side:
    study: object
    truth: object
    organs: np.ndarray


def _specs(scenario: str, rng: np.random.Generator):
    """Prior specs and a function giving the current size of each (None = vanished), plus new specs."""
    from calcscope.synth import ObjectSpec

    if scenario == "small_increase":
        prior = [
            ObjectSpec(id="L1", type="lesion", subtype="metastasis", size_mm=12.0),
            ObjectSpec(id="L2", type="lesion", subtype="metastasis", size_mm=8.0),
        ]
    else:
        prior = [
            ObjectSpec(id="L1", type="lesion", subtype="metastasis", size_mm=float(rng.uniform(16, 30))),
            ObjectSpec(id="L2", type="lesion", subtype="metastasis", size_mm=float(rng.uniform(11, 22))),
        ]
    prior += [
        ObjectSpec(id="C1", type="calcification", subtype="coarse", size_mm=float(rng.uniform(5.5, 9.0))),
        ObjectSpec(id="C2", type="calcification", subtype="coarse", size_mm=float(rng.uniform(4.0, 6.0))),
    ]
    factor = {"growth": 1.4, "shrinkage": 0.55, "deform_growth": 1.3}.get(scenario, 1.0)

    def current_size(spec) -> float | None:
        if spec.type == "lesion":
            if scenario == "vanished":
                return None
            if scenario == "small_increase":
                return 14.8 if spec.id == "L1" else spec.size_mm
            return spec.size_mm * factor
        if scenario == "growth" and spec.id == "C1":
            return spec.size_mm * 1.6
        return spec.size_mm

    new = [ObjectSpec(id="N1", type="lesion", subtype="metastasis", size_mm=15.0)] if scenario == "new_lesion" else []
    return prior, current_size, new


def _motion(scenario: str, rng: np.random.Generator):
    from calcscope.synth import Motion

    rot = tuple(float(v) for v in rng.uniform(-5, 5, 3))
    tr = tuple(float(v) for v in rng.uniform(-10, 10, 3))
    deform = float(rng.uniform(2.0, 3.0)) if scenario.startswith("deform") else 0.0
    return Motion(rotation_deg=rot, translation_mm=tr, deform_mm=deform, seed=int(rng.integers(1000)))


def _truth_findings(ph):
    """Oracle findings: kind, centre, longest diameter and partial-volume volume from the truth table.

    The label map (for registration masks and the detection-difference check) is painted
    from the truth objects map.
    """
    from calcscope.model import Finding

    out = []
    labels = np.zeros(ph.volume.shape, np.uint16)
    labels[ph.organs == 1] = 1
    n = {"lesion": 0, "calcification": 0}
    for o in sorted(ph.truth.objects, key=lambda o: o.centre_voxel):
        if not (ph.objects == o.label).any():
            continue
        kind = "lesion" if o.type == "lesion" else "calcification"
        n[kind] += 1
        value = (100 if kind == "lesion" else 1000) + n[kind]
        labels[ph.objects == o.label] = value
        out.append(Finding(id=f"{'lesion' if kind == 'lesion' else 'calc'}-{n[kind]:03d}", kind=kind, label=value,
                           volume_mm3=o.volume_pv_mm3, longest_diameter_mm=o.size_mm, size_mm=o.size_mm,
                           centroid_voxel=tuple(o.centre_voxel), centroid_mm=tuple(o.centre_mm)))
    return out, labels


def _side(ph, *, findings_mode: str, liver: str):
    from calcscope.model import Analysis
    from calcscope.pipeline import analyze_volume
    from calcscope.track import study_from_arrays

    if findings_mode == "truth":
        findings, labels = _truth_findings(ph)
        study = study_from_arrays(Analysis(findings=findings), labels, ph.volume, ct=ph.volume)
    else:
        run = analyze_volume(ph.volume, liver_mask=(ph.organs == 1) if liver == "truth" else None,
                             phase=ph.truth.phase, timestamp=False)
        study = study_from_arrays(run.analysis, run.masks.label_map(), run.volume, ct=run.volume)
    return Side(study=study, truth=ph.truth, organs=ph.organs)


def _attribute(findings, truth_objects) -> dict[int, str]:
    """finding index -> truth object id (nearest centre within max(4 mm, 0.6 x size), same kind)."""
    out: dict[int, str] = {}
    for i, f in enumerate(findings):
        if f.centroid_mm is None:
            continue
        best, best_d = None, np.inf
        for o in truth_objects:
            kind_ok = (o.type == "lesion") == (f.kind in ("lesion", "cyst"))
            d = float(np.linalg.norm(np.asarray(f.centroid_mm) - np.asarray(o.centre_mm)))
            if kind_ok and d <= max(4.0, 0.6 * o.size_mm) and d < best_d:
                best, best_d = o.id, d
        if best is not None:
            out[i] = best
    return out


def _truth_recist(prior_specs, current_size, new_specs):
    from calcscope.track._recist import RecistLesion, classify_response, select_targets, sum_of_diameters

    lesions = [RecistLesion(s.id, s.size_mm) for s in prior_specs if s.type == "lesion"]
    targets = select_targets(lesions)
    by_id = {s.id: s for s in prior_specs}
    follow = [current_size(by_id[t.id]) or 0.0 for t in targets]
    new = sum(1 for s in new_specs if s.type == "lesion" and s.size_mm >= 5.0)
    return classify_response(sum_of_diameters(t.diameter_mm for t in targets), sum_of_diameters(follow), new_lesions=new)


def run_pair(k: int, *, findings_mode: str, liver: str, shape, spacing) -> dict:
    from calcscope.synth import ObjectSpec, generate_phantom
    from calcscope.track import compare_studies

    scenario = SCENARIOS[k % len(SCENARIOS)]
    rng = np.random.default_rng(1000 + k)
    prior_specs, current_size, new_specs = _specs(scenario, rng)
    motion = _motion(scenario, rng)
    t0 = time.perf_counter()
    ph_p = generate_phantom("normal", seed=k, objects=prior_specs, shape_zyx=shape, spacing_zyx=spacing,
                            noise_seed=10_000 + k)
    placed = {o.id: o for o in ph_p.truth.objects}
    cur_specs = []
    for s in prior_specs:
        size = current_size(s)
        if size is None or s.id not in placed:
            continue
        spec = dict(placed[s.id].spec)
        spec["size_mm"] = size
        cur_specs.append(ObjectSpec(**spec))
    cur_specs += new_specs
    ph_c = generate_phantom("normal", seed=k, objects=cur_specs, motion=motion, shape_zyx=shape, spacing_zyx=spacing,
                            noise_seed=20_000 + k)
    t_gen = time.perf_counter() - t0
    # landmarks near the liver
    from scipy import ndimage

    near = ndimage.distance_transform_edt(ph_p.organs != 1, sampling=ph_p.volume.spacing_zyx) <= 15.0
    names = []
    for name, lm in ph_p.truth.landmarks.items():
        v = np.round(lm.voxel).astype(int)
        if name in ph_c.truth.landmarks and np.all(v >= 0) and np.all(v < np.asarray(near.shape)) and near[tuple(v)]:
            names.append(name)
    lp = np.array([ph_p.truth.landmarks[n].mm for n in names])
    lc = np.array([ph_c.truth.landmarks[n].mm for n in names])

    t1 = time.perf_counter()
    sp = _side(ph_p, findings_mode=findings_mode, liver=liver)
    sc = _side(ph_c, findings_mode=findings_mode, liver=liver)
    t_an = time.perf_counter() - t1
    t2 = time.perf_counter()
    run = compare_studies(sp.study, sc.study, prior_date=PRIOR_DATE, current_date=CURRENT_DATE,
                          deformable=scenario.startswith("deform"), landmarks_prior_mm=lp, landmarks_current_mm=lc,
                          timestamp=False, run_reasoning=True)
    t_cmp = time.perf_counter() - t2
    c = run.comparison

    pf, cf = sp.study.findings, sc.study.findings
    att_p = _attribute(pf, ph_p.truth.objects)
    att_c = _attribute(cf, ph_c.truth.objects)
    pid = {f.id: i for i, f in enumerate(pf)}
    cid = {f.id: i for i, f in enumerate(cf)}
    pair_of_p = {pid[m.prior_id]: cid[m.current_id] for m in c.matches}
    pair_of_c = {v: k2 for k2, v in pair_of_p.items()}
    truth_to_c = {t: j for j, t in att_c.items()}
    truth_to_p = {t: i for i, t in att_p.items()}
    decisions = correct = 0
    for i, t in att_p.items():
        decisions += 1
        want = truth_to_c.get(t)
        correct += int(pair_of_p.get(i) == want)
    for j, t in att_c.items():
        decisions += 1
        want = truth_to_p.get(t)
        correct += int(pair_of_c.get(j) == want)
    vol_errors = []
    calc_changes = []
    true_p = {o.id: o for o in ph_p.truth.objects}
    true_c = {o.id: o for o in ph_c.truth.objects}
    for m in c.matches:
        i, j = pid[m.prior_id], cid[m.current_id]
        t = att_p.get(i)
        if t is None or att_c.get(j) != t or m.volume_change_percent is None:
            continue
        true_pct = (true_c[t].volume_analytic_mm3 / true_p[t].volume_analytic_mm3 - 1.0) * 100.0
        rec = {"object": t, "kind": m.kind, "true_pct": true_pct, "measured_pct": m.volume_change_percent,
               "error_pp": m.volume_change_percent - true_pct, "sd_pp": m.volume_change_sd_percent,
               "true_size_mm": [true_p[t].size_mm, true_c[t].size_mm],
               "true_volume_mm3": [true_p[t].volume_analytic_mm3, true_c[t].volume_analytic_mm3],
               "measured_volume_mm3": [m.prior_volume_mm3, m.current_volume_mm3]}
        if m.kind == "calcification":
            # the phantom's calcium keeps its density, so its content changes as its volume does
            if m.content_change_percent is not None:
                rec["content"] = {"measured_pct": m.content_change_percent,
                                  "error_pp": m.content_change_percent - true_pct,
                                  "sd_pp": m.content_change_sd_percent}
            calc_changes.append(rec)
        if true_p[t].size_mm < 5.0 or true_c[t].size_mm < 5.0:
            continue
        vol_errors.append(rec)
    truth_rec = _truth_recist(prior_specs, current_size, new_specs)
    lm_err = c.registration.landmark_error
    return {
        "pair": k,
        "scenario": scenario,
        "motion": {"rotation_deg": motion.rotation_deg, "translation_mm": motion.translation_mm, "deform_mm": motion.deform_mm},
        "landmarks": len(names),
        "landmark_median_mm": None if lm_err is None else lm_err.median_mm,
        "landmark_errors_mm": [] if c.registration.landmark_error is None else run.registration.landmark_errors_mm.tolist(),
        "liver_dice_after": c.registration.liver_dice_after,
        "match_decisions": decisions,
        "match_correct": correct,
        "volume_errors": vol_errors,
        "calcification_changes": calc_changes,
        "recist_truth": truth_rec.category,
        "recist_measured": c.recist.category,
        "recist_rule": c.recist.rule,
        "growth_alerts": [a.finding_id for a in c.growth_alerts],
        "growth_expected": scenario == "growth",
        "differential_top": c.differential.ranked[0].condition_id if c.differential and c.differential.ranked else None,
        "seconds": {"generate": round(t_gen, 1), "analyse": round(t_an, 1), "compare": round(t_cmp, 1)},
    }


def _kind_group(kind: str) -> str:
    return "lesion" if kind in ("lesion", "cyst") else "calcification"


def _change_stats(recs: list[dict]) -> dict:
    """Error of the volume change (pp) and its calibration against the reported noise SD."""
    if not recs:
        return {"n": 0}
    err = np.array([abs(v["error_pp"]) for v in recs])
    with_sd = [v for v in recs if v.get("sd_pp")]
    z = np.array([v["error_pp"] / v["sd_pp"] for v in with_sd])
    return {
        "n": len(recs),
        "within_10pp_fraction": float((err <= 10.0).mean()),
        "abs_error_pp_median": float(np.median(err)),
        "abs_error_pp_max": float(err.max()),
        "with_sd_n": len(with_sd),
        "within_2sd_fraction": float((np.abs(z) <= 2.0).mean()) if z.size else None,
        "error_over_sd_rms": float(np.sqrt(np.mean(z**2))) if z.size else None,
        "error_over_sd_median": float(np.median(z)) if z.size else None,
        "sd_pp_median": float(np.median([v["sd_pp"] for v in with_sd])) if with_sd else None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--findings", choices=("pipeline", "truth"), default="pipeline")
    ap.add_argument("--liver", choices=("truth", "auto"), default="truth")
    ap.add_argument("--shape", type=int, nargs=3, default=(80, 160, 160))
    ap.add_argument("--spacing", type=float, nargs=3, default=(2.5, 1.5, 1.5))
    ap.add_argument("--json", default=None, help="write the per-pair results to this JSON file")
    args = ap.parse_args(argv)

    rows = []
    for k in range(args.pairs):
        r = run_pair(k, findings_mode=args.findings, liver=args.liver, shape=tuple(args.shape), spacing=tuple(args.spacing))
        rows.append(r)
        print(
            f"pair {k:2d} {r['scenario']:15s} landmarks median {r['landmark_median_mm'] or float('nan'):.2f} mm "
            f"(n={r['landmarks']}), match {r['match_correct']}/{r['match_decisions']}, "
            f"RECIST {r['recist_measured']} (truth {r['recist_truth']}), alerts {r['growth_alerts']}, "
            f"vol err pp (error, sd) {[(round(v['error_pp'], 1), v['sd_pp']) for v in r['volume_errors']]}, "
            f"calc (true %, error, sd; content error, sd) {[(round(v['true_pct']), round(v['error_pp'], 1), v['sd_pp'], round(v['content']['error_pp'], 1) if 'content' in v else None, v['content']['sd_pp'] if 'content' in v else None) for v in r['calcification_changes']]}, "
            f"{r['seconds']}",
            flush=True,
        )
    all_lm = np.concatenate([np.asarray(r["landmark_errors_mm"]) for r in rows if r["landmark_errors_mm"]])
    dec = sum(r["match_decisions"] for r in rows)
    cor = sum(r["match_correct"] for r in rows)
    verr = np.array([abs(v["error_pp"]) for r in rows for v in r["volume_errors"]])
    zs = [v["error_pp"] / v["sd_pp"] for r in rows for v in r["volume_errors"] if v.get("sd_pp")]
    calc_all = [v for r in rows for v in r["calcification_changes"]]
    rec_ok = sum(r["recist_measured"] == r["recist_truth"] for r in rows)
    alert_tp = sum(bool(r["growth_alerts"]) and r["growth_expected"] for r in rows)
    alert_fp = sum(bool(r["growth_alerts"]) and not r["growth_expected"] for r in rows)
    alert_fn = sum((not r["growth_alerts"]) and r["growth_expected"] for r in rows)
    summary = {
        "pairs": len(rows),
        "findings": args.findings,
        "liver": args.liver,
        "landmark_error_median_mm": float(np.median(all_lm)) if all_lm.size else None,
        "landmark_error_p90_mm": float(np.percentile(all_lm, 90)) if all_lm.size else None,
        "landmarks": int(all_lm.size),
        "pair_median_of_medians_mm": float(np.median([r["landmark_median_mm"] for r in rows if r["landmark_median_mm"] is not None])),
        "matching_correct_fraction": cor / dec if dec else None,
        "matching_decisions": dec,
        "volume_change_within_10pp_fraction": float((verr <= 10.0).mean()) if verr.size else None,
        "volume_change_abs_error_pp_median": float(np.median(verr)) if verr.size else None,
        "volume_change_abs_error_pp_max": float(verr.max()) if verr.size else None,
        "volume_change_n": int(verr.size),
        # calibration of the reported noise SD (lesions and calcifications carry one): share of errors within 2 SD
        "volume_change_with_sd_n": len(zs),
        "volume_change_within_2sd_fraction": float((np.abs(zs) <= 2.0).mean()) if zs else None,
        "volume_change_error_over_sd_rms": float(np.sqrt(np.mean(np.square(zs)))) if zs else None,
        "volume_change_sd_pp_median": float(np.median([v["sd_pp"] for r in rows for v in r["volume_errors"]
                                                        if v.get("sd_pp")])) if zs else None,
        "volume_change_by_kind": {
            kind: _change_stats([v for r in rows for v in r["volume_errors"] if _kind_group(v["kind"]) == kind])
            for kind in ("lesion", "calcification")
        },
        "calcification_changes_all_sizes": _change_stats(calc_all),
        # the same pairs measured by their calcium content (summed HU excess) instead of their volume
        "calcification_content_changes_all_sizes": _change_stats([v["content"] for v in calc_all if "content" in v]),
        "recist_correct_fraction": rec_ok / len(rows),
        "growth_alert_pairs": {"tp": alert_tp, "fp": alert_fp, "fn": alert_fn},
        "compare_seconds_median": float(np.median([r["seconds"]["compare"] for r in rows])),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"summary": summary, "pairs": rows}, fh, indent=2, default=str)
    ok = (
        summary["landmark_error_median_mm"] is not None and summary["landmark_error_median_mm"] <= 2.0
        and (summary["matching_correct_fraction"] or 0) >= 0.95
        and summary["recist_correct_fraction"] >= 0.95
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
