"""Measure lesion / duct detection, lesion description and calcification association on phantoms.

Runs :func:`calcscope.detect.find_lesions`, :func:`calcscope.detect.find_ducts`,
:func:`calcscope.describe.describe_lesions` / ``describe_ducts`` and
:func:`calcscope.describe.associate` on ``calcscope.synth`` phantoms (presets x seeds x
phases) with the TRUE liver mask and the TRUE calcification label map, and compares with
the phantom truth:

* lesion sensitivity for truth lesions >= 10 mm and 5-10 mm, both over all lesions and
  over the lesions that are hypodense in that phase (noise-free mean HU at least
  ``--hypodense-hu`` below the liver);
* false positives per scan (a detected lesion overlapping no truth lesion);
* per-lesion Dice (truth mask incl. its calcifications vs the detected label), longest
  diameter error (detected RECIST axial longest diameter vs truth size_mm);
* cyst vs solid (truth expected_kind "cyst" vs finding kind);
* calcification association: parent (lesion/duct/none) and relation vs truth, over all
  calcifications, over those that have a parent, and over those whose parent was
  detected (the association step alone: a missed lesion cannot be a parent);
* duct dilatation found per preset vs truth.has_duct_dilatation.

Usage::

    .venv/bin/python bench/eval_lesions.py --seeds 0 1 --phases preset non_contrast arterial portal_venous delayed
    .venv/bin/python bench/eval_lesions.py --json lesions_eval.json

``preset`` in ``--phases`` means each preset's own default phase.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import numpy as np

from calcscope.describe import associate, describe_ducts, describe_lesions
from calcscope.detect import find_lesions_and_ducts
from calcscope.model import Finding
from calcscope.synth import HU_BY_PHASE, PRESETS, generate_phantom, preset_phases


def _calc_labels(ph) -> tuple[np.ndarray, list]:
    """Truth calcification label map 1..n (order of the truth list) and the truth objects."""
    calcs = [o for o in ph.truth.objects if o.type == "calcification"]
    lab = np.zeros(ph.objects.shape, np.int32)
    for n, o in enumerate(calcs, start=1):
        lab[ph.objects == o.label] = n
    return lab, calcs


def evaluate_case(preset: str, seed: int, phase: str | None, *, hypodense_hu: float) -> dict:
    ph = generate_phantom(preset, seed=seed, phase=phase)
    return _evaluate_phantom(ph, preset, seed, hypodense_hu=hypodense_hu, liver_hu=HU_BY_PHASE[ph.truth.phase]["liver"])


def _evaluate_phantom(ph, preset: str, seed: int, *, hypodense_hu: float, liver_hu: float) -> dict:
    phase = ph.truth.phase
    vol = ph.volume
    liver = ph.organs == 1
    calc_lab, calc_truth = _calc_labels(ph)
    t0 = time.perf_counter()
    det, ducts = find_lesions_and_ducts(vol, liver, phase=phase, calcifications=calc_lab)  # as the pipeline
    t_det = time.perf_counter() - t0
    lf = describe_lesions(
        vol, det.labels, liver=liver, lobes=ph.lobes, parenchyma_hu=det.parenchyma_hu, noise_hu=det.noise_hu,
        phase=phase, inner=det.inner,
    )
    df = describe_ducts(vol, ducts.mask, liver=liver, lobes=ph.lobes)
    cf = [Finding(kind="calcification", id=f"calc-{n:03d}", label=1000 + n) for n in range(1, len(calc_truth) + 1)]
    associate(cf, lf, df, volume=vol, calc_labels=calc_lab, lesion_labels=det.labels, duct_mask=ducts.mask)

    by_id = {o.id: o for o in ph.truth.objects}
    rows = []
    matched_det: dict[str, int] = {}
    truth_lesions = [o for o in ph.truth.objects if o.type == "lesion"]
    # truth lesion mask includes its child calcifications
    for o in truth_lesions:
        t = ph.objects == o.label
        for c in o.children:
            if c in by_id:
                t |= ph.objects == by_id[c].label
        ids, counts = np.unique(det.labels[t], return_counts=True)
        counts, ids = counts[ids > 0], ids[ids > 0]
        row = {
            "preset": preset, "seed": seed, "phase": phase, "id": o.id, "subtype": o.subtype,
            "size_mm": o.size_mm, "expected_kind": o.expected_kind,
            "contrast_hu": (o.hu_measured if o.hu_measured is not None else o.hu) - liver_hu,
        }
        row["hypodense"] = row["contrast_hu"] <= -hypodense_hu
        if ids.size:
            k = int(ids[np.argmax(counts)])
            p = det.labels == k
            f = lf[k - 1]
            matched_det[o.id] = k
            row.update(
                found=True,
                dice=float(2 * (t & p).sum() / (t.sum() + p.sum())),
                diameter_mm=f.longest_diameter_mm,
                diameter_error_mm=abs(f.longest_diameter_mm - o.size_mm),
                volume_ml=float(p.sum() * vol.voxel_volume_mm3 / 1000.0),
                truth_volume_ml=float(t.sum() * vol.voxel_volume_mm3 / 1000.0),
                kind=f.kind, signs=list(f.signs), margin=f.margin, enhancement=f.enhancement,
            )
        else:
            row.update(found=False)
        rows.append(row)
    truth_any = np.isin(ph.objects, [o.label for o in truth_lesions]) if truth_lesions else np.zeros(ph.objects.shape, bool)
    fp = 0
    for k in range(1, int(det.labels.max()) + 1):
        if not (truth_any & (det.labels == k)).any():
            fp += 1
    # association
    assoc = []
    for n, o in enumerate(calc_truth, start=1):
        c = cf[n - 1]
        if not (calc_lab == n).any():
            continue
        want_parent = None
        if o.parent and o.parent in by_id:
            po = by_id[o.parent]
            if po.type == "lesion":
                k = matched_det.get(po.id)
                want_parent = f"lesion-{k:03d}" if k else "lesion-missed"
            else:
                want_parent = "duct"
        got = c.parent_id
        if want_parent == "duct":
            ok_parent = bool(got and got.startswith("duct-"))
        else:
            ok_parent = got == want_parent
        assoc.append({
            "preset": preset, "seed": seed, "phase": phase, "id": o.id, "subtype": o.subtype,
            "truth_parent": o.parent, "truth_relation": o.relation, "got_parent": got, "got_relation": c.relation,
            "parent_ok": ok_parent, "relation_ok": ok_parent and (c.relation == o.relation),
            "parent_detected": want_parent != "lesion-missed" and not (want_parent == "duct" and not len(df)),
        })
    return {
        "preset": preset, "seed": seed, "phase": phase, "lesions": rows, "fp": fp, "assoc": assoc,
        "duct_truth": bool(ph.truth.has_duct_dilatation), "duct_found": len(df) > 0,
        "duct_diameters_mm": [round(d, 2) for d in ducts.diameters_mm], "time_s": t_det,
        "parenchyma_hu": det.parenchyma_hu, "noise_hu": det.noise_hu,
    }


def _real_ct_case(seed: int, *, hypodense_hu: float) -> dict:
    """Lesions (with calcifications) inserted into the shared real CT (non-contrast, 3 mm)."""
    from pathlib import Path

    from calcscope.io import load_ct, load_mask_like
    from calcscope.synth import ObjectSpec
    from calcscope.synth._insert import insert_objects

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg-example-ct"
    vol = load_ct(root / "example_ct.nii.gz")
    seg = load_mask_like(root / "example_seg_fast_force_split.nii.gz", vol)
    liver = np.asarray(getattr(seg, "array", seg)) == 5
    rng = np.random.default_rng(seed)
    # this scan is non-contrast with a ~47 HU liver: metastases 25 HU below it, cysts near water
    met_hu = float(np.median(vol.array[liver])) - 25.0
    specs = [
        ObjectSpec(id="met-a", type="lesion", subtype="metastasis", size_mm=float(rng.uniform(20, 30)), hu=met_hu),
        ObjectSpec(type="calcification", subtype="coarse", size_mm=6.0, parent="met-a", relation="centre"),
        ObjectSpec(id="met-b", type="lesion", subtype="metastasis", size_mm=float(rng.uniform(12, 18)), hu=met_hu),
        ObjectSpec(id="cyst-a", type="lesion", subtype="cyst", size_mm=float(rng.uniform(15, 25)), hu=8.0),
        ObjectSpec(id="met-c", type="lesion", subtype="metastasis", size_mm=float(rng.uniform(8, 10)), hu=met_hu),
    ]
    new, labels, objs = insert_objects(vol, liver, specs, seed=seed, phase="non_contrast")

    class _P:  # the parts of a Phantom that evaluate_case reads
        pass

    ph = _P()
    ph.volume, ph.objects, ph.organs, ph.lobes = new, labels, liver.astype(np.uint8), None
    ph.truth = type("T", (), {"objects": objs, "phase": "non_contrast", "has_duct_dilatation": False})()
    return _evaluate_phantom(ph, "real_ct_insertion", seed, hypodense_hu=hypodense_hu, liver_hu=float(np.median(vol.array[liver])))


def summarise(cases: list[dict]) -> dict:
    rows = [r for c in cases for r in c["lesions"]]
    def sens(sel):
        s = [r for r in rows if sel(r)]
        return (sum(r["found"] for r in s) / len(s) if s else float("nan"), len(s))
    found = [r for r in rows if r["found"]]
    assoc = [a for c in cases for a in c["assoc"]]
    assoc_l = [a for a in assoc if a["truth_parent"] is not None]
    duct_by_preset = defaultdict(lambda: [0, 0])
    for c in cases:
        duct_by_preset[c["preset"]][0] += int(c["duct_found"])
        duct_by_preset[c["preset"]][1] += 1
    kinds_ok = [r for r in found if (r["kind"] == "cyst") == (r["expected_kind"] == "cyst")]
    return {
        "scans": len(cases),
        "truth_lesions": len(rows),
        "sensitivity_ge10mm": sens(lambda r: r["size_mm"] >= 10),
        "sensitivity_5_10mm": sens(lambda r: 5 <= r["size_mm"] < 10),
        "sensitivity_ge10mm_hypodense": sens(lambda r: r["size_mm"] >= 10 and r["hypodense"]),
        "sensitivity_5_10mm_hypodense": sens(lambda r: 5 <= r["size_mm"] < 10 and r["hypodense"]),
        "fp_per_scan": sum(c["fp"] for c in cases) / max(len(cases), 1),
        "max_fp_in_a_scan": max((c["fp"] for c in cases), default=0),
        "median_dice": float(np.median([r["dice"] for r in found])) if found else float("nan"),
        "median_diameter_error_mm": float(np.median([r["diameter_error_mm"] for r in found])) if found else float("nan"),
        "cyst_vs_solid_correct": (len(kinds_ok) / len(found) if found else float("nan"), len(found)),
        "assoc_parent_correct_all": (np.mean([a["parent_ok"] for a in assoc]) if assoc else float("nan"), len(assoc)),
        "assoc_parent_correct_with_parent": (np.mean([a["parent_ok"] for a in assoc_l]) if assoc_l else float("nan"), len(assoc_l)),
        # the association step itself: calcifications whose parent lesion / duct was detected
        "assoc_parent_correct_parent_detected": (
            np.mean([a["parent_ok"] for a in assoc_l if a["parent_detected"]]) if assoc_l else float("nan"),
            sum(a["parent_detected"] for a in assoc_l),
        ),
        "assoc_relation_correct_with_parent": (np.mean([a["relation_ok"] for a in assoc_l]) if assoc_l else float("nan"), len(assoc_l)),
        "duct_found_by_preset": {k: f"{v[0]}/{v[1]}" for k, v in sorted(duct_by_preset.items())},
        "median_time_s": float(np.median([c["time_s"] for c in cases])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--phases", nargs="*", default=["preset", "non_contrast", "arterial", "portal_venous", "delayed"])
    ap.add_argument("--hypodense-hu", type=float, default=10.0)
    ap.add_argument("--json", default=None, help="write every case and the summary here")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--real-ct", type=int, default=0, metavar="N",
                    help="also insert lesions into ../shared/data/totalseg-example-ct with N seeds")
    a = ap.parse_args(argv)
    cases = []
    skipped: list[str] = []
    for preset in a.presets:
        for phase in preset_phases(preset, a.phases):
            for seed in a.seeds:
                try:
                    c = evaluate_case(preset, seed, phase, hypodense_hu=a.hypodense_hu)
                except ValueError as exc:  # the phantom generator could not place an object
                    skipped.append(f"{preset}/{phase}/seed {seed}: {exc}")
                    print(f"skipped {skipped[-1]}", file=sys.stderr)
                    continue
                cases.append(c)
                if a.verbose:
                    miss = [r["id"] for r in c["lesions"] if not r["found"]]
                    bad = [f"{x['id']}:{x['got_relation']}!={x['truth_relation']}" for x in c["assoc"] if not x["relation_ok"]]
                    print(f"{preset:24s} {phase:13s} s{seed} fp={c['fp']} missed={miss} duct={c['duct_found']} assoc_bad={bad}", file=sys.stderr)
    summary = summarise(cases)
    summary["skipped_cases"] = skipped
    if a.real_ct:
        real = [_real_ct_case(seed, hypodense_hu=a.hypodense_hu) for seed in range(a.real_ct)]
        if a.verbose:
            for c in real:
                print(f"real_ct s{c['seed']} fp={c['fp']} missed={[r['id'] for r in c['lesions'] if not r['found']]}", file=sys.stderr)
        summary["real_ct_insertion"] = summarise(real)
        cases += real
    print(json.dumps(summary, indent=1, default=float))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"summary": summary, "cases": cases}, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
