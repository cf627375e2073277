"""How far the hypodense-lesion gates are from a decision: real negatives vs phantom lesions.

Real scans (default): for the two lesion-free abdominal CTs of
``../shared/data/totalseg-example-ct`` the lesion detector runs for the phase the pipeline
estimates and for each phase override (``--phases``), and for perturbed liver masks: the
automatic mask, the automatic mask with the IVC cut 2 mm wider (``ivc_edge_mm`` 5 instead
of 3), the TotalSegmentator reference liver (label 5) resampled to the CT, and each of the
automatic and reference masks eroded / dilated by ``--radii`` mm (Euclidean, in mm; on the
3 mm NIfTI 1 and 2 mm change nothing and are skipped as duplicates). Calcifications and
the vessel map are found with the same mask and phase, as the pipeline does.

Every candidate that reaches the full-resolution refinement is measured against every
gate as a ratio that is 1 at the gate and above 1 on the passing side:

* ``seed``: the deepest drop of the candidate's detection component below the parenchymal
  mode, over the seed threshold ``max(k_seed SD, min_contrast_hu)`` (fine or coarse scale);
* ``size``: equivalent-sphere diameter over ``0.9 min_diameter_mm``; ``minvox``: voxels / 4;
* ``cnr``: parenchyma minus the median HU over ``max(0.5 min_contrast_hu, 4 noise / sqrt(n))``;
* ``fat``: ``max_fat_fraction`` over the region's fat fraction;
* ``elong``: length / (3.5 x inscribed diameter), the elongation half of the tubular test
  (tubular when it is >= 1 and the volume is >= 4 inscribed spheres);
* ``pv``: depth of the seed from the liver's edge or fat / air inside the mask over the
  partial-volume rim (:func:`calcscope.detect._lesion.seed_tissue_depth_mm`);
* ``focal``: the seed test against the liver 3-10 mm around the candidate
  (:func:`calcscope.detect._lesion.focal_seed_ratio`).

``old`` is the smallest of the first five ratios (0 when tubular or fat-density), ``new``
adds ``pv`` and ``focal`` (hypodense candidates). ``cnr_corr`` is not a gate: contrast over
the standard error of the median (1.25 noise sqrt(F / n)) with F the noise-correlation
factor of the scan (:func:`calcscope.describe._lesion.noise_correlation_factor` of the
parenchyma with the anatomy smoothed away). Each configuration runs three times: without
the robustness gates (``robustness_gates=False``, the lesion count before them), with
them, and with the seed threshold lowered to ``--relaxed-k`` SDs (candidates the seed
gate stops; marked "relaxed seed only"). Parts split off without a seed of their own are
rejected before refinement and are not listed (their count is in ``rejected``).

``--phantoms`` measures the phantom kit (11 presets x phases x ``--seeds``, true liver and
calcifications as ``bench/eval_lesions.py``) and lists every candidate with the truth
lesions it overlaps.

Every candidate goes to stderr (``ACCEPTED``: most of its voxels carry a final lesion
label); stdout gets a summary: a markdown table per scan and mask (real scans) or the
smallest ratio of each gate over the truth lesions' detections (phantoms). The figures in
docs/performance.md come from these two commands.

Usage::

    .venv/bin/python bench/lesion_margins.py --json real.json                  # ~6 min
    .venv/bin/python bench/lesion_margins.py --phantoms --json phantoms.json   # ~2 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from calcscope.describe._lesion import noise_correlation_factor
from calcscope.detect import _lesion as L
from calcscope.detect import find_calcifications
from calcscope.model import Volume

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg-example-ct"
SCANS = {
    "contrast_dicom": ("example_ct_dicom", "example_seg_dicom.nii.gz"),
    "noncontrast_nifti": ("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
}
DEFAULTS = dict(min_diameter_mm=5.0, min_contrast_hu=10.0, k_seed=5.0, k_seed_coarse=5.0, max_fat_fraction=0.1)


@contextlib.contextmanager
def recording():
    """Record the liver grid and every refined candidate of :func:`find_lesions`."""
    rec: dict = {"pieces": []}
    orig_grid, orig_refine, orig_mass = L.prepare_liver_grid, L._refine, L._mass_candidates

    def mass_wrap(*a, **k):
        res = orig_mass(*a, **k)
        rec["n_mass"] = len(res)
        return res

    def grid_wrap(*a, **k):
        g = orig_grid(*a, **k)
        rec["grid"] = g
        return g

    def refine_wrap(full_img, full_liver, full_excluded, calc, core, seed, spacing, **k):
        reg = orig_refine(full_img, full_liver, full_excluded, calc, core, seed, spacing, **k)
        base = full_img.base if full_img.base is not None else full_img
        off = (full_img.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // base.itemsize
        start = np.unravel_index(off, base.shape)
        fb = tuple(slice(int(s), int(s) + n) for s, n in zip(start, full_img.shape))
        rec["pieces"].append(dict(fb=fb, reg=reg, core=core, seed=seed, sign=k.get("sign", -1), mass=False))
        return reg

    L.prepare_liver_grid, L._refine, L._mass_candidates = grid_wrap, refine_wrap, mass_wrap
    try:
        yield rec
    finally:
        L.prepare_liver_grid, L._refine, L._mass_candidates = orig_grid, orig_refine, orig_mass
    # the mass candidates are refined last, in the order found (one with no voxel in the liver is skipped)
    for pc in rec["pieces"][len(rec["pieces"]) - rec.get("n_mass", 0):]:
        pc["mass"] = True


def measure(volume: Volume, liver: np.ndarray, labels: np.ndarray, rec: dict, *, factor: float) -> list[dict]:
    """Gate ratios (1 = at the gate, > 1 passing) of every recorded candidate."""
    g = rec.get("grid")
    if g is None:
        return []
    img = volume.array[g.crop].astype(np.float32)
    liv = liver[g.crop]
    out_lab = labels[g.crop]
    p, sn, cn, noise = g.parenchyma_hu, g.smoothed_noise_hu, g.coarse_noise_hu, g.noise_hu
    t_seed = max(DEFAULTS["k_seed"] * sn, DEFAULTS["min_contrast_hu"])
    t_coarse = max(DEFAULTS["k_seed_coarse"] * cn, DEFAULTS["min_contrast_hu"])
    t_grow = p - max(2.0 * sn, 0.5 * DEFAULTS["min_contrast_hu"])  # k_grow = 2
    min_d = 0.9 * DEFAULTS["min_diameter_mm"]
    sp = volume.spacing_zyx
    rim_mm = max(3.0, 1.5 * max(sp[1:]), 2.0 * sp[0])  # as find_lesions
    refined = L._on_grid(g, [pc["reg"] for pc in rec["pieces"]], [pc["fb"] for pc in rec["pieces"]])
    rows = []
    for i, pc in enumerate(rec["pieces"]):
        fb, reg, core = pc["fb"], pc["reg"], pc["core"]
        vals = img[fb][reg & ~g.excluded_full[fb]]
        if vals.size == 0:
            continue
        # scan-wide seed test on the detection grid: voxels of the component where a seed may
        # lie (deep liver, below the grow threshold), fine or coarse scale
        gi = tuple(((np.argwhere(core) + np.array([s.start for s in fb])) // np.array(g.factors)).T)
        ok = g.deep[gi] & (g.smoothed[gi] < t_grow)
        seed_r = 0.0
        if ok.any():
            seed_r = float(max((p - g.smoothed[gi][ok]).max() / t_seed, (p - g.coarse[gi][ok]).max() / t_coarse))
        # the robustness gates of find_lesions, as implemented there
        sd_m = pc["seed"] & ~g.excluded_full[fb]
        if not sd_m.any():
            sd_m = reg & ~g.excluded_full[fb]
        pv_depth = L.seed_tissue_depth_mm(img[fb], liv[fb], sd_m, sp, noise_hu=noise)
        bg = L.local_background(g, reg, fb, refined)
        f_seed = float("nan") if bg is None else L.focal_seed_ratio(
            bg, g, k_seed=DEFAULTS["k_seed"], k_seed_coarse=DEFAULTS["k_seed_coarse"],
            min_contrast_hu=DEFAULTS["min_contrast_hu"])
        n_vox = int(reg.sum())
        vol = n_vox * volume.voxel_volume_mm3
        eqd = (6.0 * vol / np.pi) ** (1 / 3)
        med = float(np.median(vals))
        contrast = pc["sign"] * (med - p)
        need = max(0.5 * DEFAULTS["min_contrast_hu"], 4.0 * noise / np.sqrt(vals.size))
        ff = L.fat_fraction(vals, noise_hu=noise)
        shape = L.component_shape(reg, sp)
        rows.append(dict(
            piece=i, sign=pc["sign"], mass=pc["mass"], accepted=bool((out_lab[fb][reg] > 0).mean() > 0.5),
            vol_ml=round(vol / 1000.0, 4), eqd_mm=round(eqd, 2), n=int(vals.size), median_hu=round(med, 1),
            contrast_hu=round(contrast, 2), noise_hu=round(noise, 2),
            # ratios of the scan-wide gates
            seed=round(seed_r, 3), size=round(eqd / min_d, 3), cnr=round(contrast / need, 3),
            fat=round(min(DEFAULTS["max_fat_fraction"] / max(ff, 1e-9), 99.0), 2), minvox=round(n_vox / 4.0, 2),
            tub=not L.is_tubular(shape), medhu_ok=med >= -30.0,
            elongation=round(shape["extent_mm"] / max(2.0 * shape["r_max_mm"], 1e-6) / 3.5, 3),
            # ratios of the robustness gates
            pv=round(pv_depth / rim_mm, 3), pv_depth_mm=round(pv_depth, 2), focal_seed=round(f_seed, 3),
            local_bg_hu=None if bg is None else round(bg.fine_hu, 1),
            # not a gate: contrast over the standard error of the median with correlated noise
            cnr_corr=round(contrast / (1.25 * noise * np.sqrt(factor / vals.size)), 2),
            centre_zyx=[int(v) for v in (np.argwhere(reg).mean(0) + [s.start + c.start for s, c in zip(fb, g.crop)])],
        ))
    return rows


def score(r: dict, *, new_gates: bool = True) -> float:
    """Smallest gate ratio: the candidate's distance from acceptance (>= 1 passes every gate).

    ``new_gates`` adds the partial-volume and focality gates (hypodense candidates only; a
    ratio that could not be measured does not count).
    """
    s = min(r["seed"], r["size"], r["cnr"], r["fat"], r["minvox"])
    if new_gates and r["sign"] < 0 and not r["mass"]:
        s = min([s] + [r[k] for k in ("pv", "focal_seed") if r[k] == r[k]])
    if not r["tub"] or not r["medhu_ok"]:
        s = min(s, 0.0)
    return s


def scan_factor(volume: Volume, grid) -> float:
    """Noise-correlation factor of the scan, measured on the deep usable parenchyma."""
    img = volume.array[grid.crop].astype(np.float32)
    deep_full = grid.to_full(grid.deep, img.shape) & ~grid.excluded_full
    # plain parenchyma only (within 2.5 noise SD of the parenchymal mode), anatomy removed
    sel = deep_full & (np.abs(img - grid.parenchyma_hu) < 2.5 * grid.noise_hu)
    resid = img - L.normalized_smooth(img, sel, volume.spacing_zyx, 6.0)
    return noise_correlation_factor(resid, sel)


def run_real(args) -> list[dict]:
    from calcscope.io import load_ct, load_mask_like
    from calcscope.segment import estimate_phase, segment_liver
    from calcscope.segment._api import capsular_margin
    from calcscope.segment._classical import ClassicalParams

    out = []
    for name, (ct, segf) in SCANS.items():
        if args.scans and name not in args.scans:
            continue
        vol = load_ct(ROOT / ct)
        auto = segment_liver(vol).mask
        ivc5 = segment_liver(vol, params=ClassicalParams(ivc_edge_mm=5.0)).mask
        ref = np.asarray(load_mask_like(ROOT / segf, vol)) == 5
        est = estimate_phase(vol, auto).phase.value
        masks = {"auto": auto, "auto_ivc+2mm": ivc5, "ref": ref}
        for base in ("auto", "ref"):
            for r in args.radii:
                inside = L.edt_mm(np.pad(masks[base], 1), vol.spacing_zyx)[1:-1, 1:-1, 1:-1]
                outside = L.edt_mm(np.pad(~masks[base], 1, constant_values=True), vol.spacing_zyx)[1:-1, 1:-1, 1:-1]
                masks[f"{base}_erode{r:g}"] = masks[base] & (inside > r)
                masks[f"{base}_dilate{r:g}"] = masks[base] | (outside <= r)
        seen: dict[bytes, str] = {}
        for mname, m in masks.items():
            if args.masks and mname not in args.masks:
                continue
            key = np.packbits(m).tobytes()
            if key in seen:
                print(f"{name} {mname}: same mask as {seen[key]}, skipped", file=sys.stderr)
                continue
            seen[key] = mname
            margin = capsular_margin(vol, m, 3.0)
            phases = [est] + [p for p in args.phases if p != est]
            for ph in phases:
                t0 = time.perf_counter()
                calc = find_calcifications(vol, m, phase=ph, margin=margin)
                res = {}
                for mode, kw in (("old", dict(robustness_gates=False)), ("new", {}),
                                 ("relaxed", dict(k_seed=args.relaxed_k, k_seed_coarse=args.relaxed_k))):
                    with recording() as rec:
                        det = L.find_lesions(vol, m, phase=ph, calcifications=calc.labels, vessels=calc.vessels, **kw)
                    fac = scan_factor(vol, rec["grid"])
                    res[mode] = (det, measure(vol, m, det.labels, rec, factor=fac), fac)
                det, rows, fac = res["new"]
                # candidates of the relaxed run not already reaching the acceptance tests
                known = {tuple(r["centre_zyx"]) for r in rows}
                extra = [dict(r, accepted=False, relaxed_only=True) for r in res["relaxed"][1]
                         if tuple(r["centre_zyx"]) not in known]
                cands = sorted(rows + extra, key=score, reverse=True)
                case = dict(scan=name, phase=ph + (" (est.)" if ph == est else ""), mask=mname,
                            liver_ml=round(m.sum() * vol.voxel_volume_mm3 / 1000, 1), lesions=det.count,
                            lesions_old=res["old"][0].count,
                            accepted_old=[r for r in res["old"][1] if r["accepted"] and r["tub"] and r["medhu_ok"]
                                          and min(r["size"], r["cnr"], r["fat"], r["minvox"]) >= 1.0],
                            rejected=dict(det.rejected),
                            parenchyma_hu=round(det.parenchyma_hu, 2), smoothed_sd=round(det.smoothed_noise_hu, 2),
                            seed_thr_hu=round(det.seed_threshold_hu, 2), noise_hu=round(det.noise_hu, 2),
                            corr_factor=round(fac, 2), candidates=cands[: args.top], n_candidates=len(cands),
                            time_s=round(time.perf_counter() - t0, 1))
                out.append(case)
                print_case(case)
    return out


def fmt(r: dict) -> str:
    flags = "" if r["tub"] else " TUBULAR"
    flags += "" if r["medhu_ok"] else " FAT-HU"
    flags += " ACCEPTED" if r["accepted"] else ""
    flags += " (relaxed seed only)" if r.get("relaxed_only") else ""
    return (f"old {score(r, new_gates=False):5.2f} new {score(r):5.2f} | seed {r['seed']:5.2f} size {r['size']:5.2f}"
            f" cnr {r['cnr']:5.2f} fat {r['fat']:5.2f} vox {r['minvox']:4.2f} elong {r['elongation']:4.2f}"
            f" | pv {r['pv']:5.2f} focal {r['focal_seed']:5.2f}"
            f" | {r['vol_ml']:.3f} mL d={r['eqd_mm']:.1f} mm n={r['n']} contrast {r['contrast_hu']:.1f} HU"
            f" (local bg {r['local_bg_hu']}) cnr_corr {r['cnr_corr']:.1f} at {r['centre_zyx']}{flags}")


def print_case(c: dict) -> None:
    print(f"== {c['scan']} {c['phase']} {c['mask']} ({c['liver_ml']} mL): lesions {c['lesions']} (without the robustness"
          f" gates {c['lesions_old']}), rejected {c['rejected']}, parenchyma "
          f"{c['parenchyma_hu']} HU, smoothed SD {c['smoothed_sd']}, seed thr {c['seed_thr_hu']}, noise {c['noise_hu']},"
          f" corr factor {c['corr_factor']}, {c['n_candidates']} candidates, {c['time_s']} s", file=sys.stderr)
    for r in c["candidates"]:
        print("   " + fmt(r), file=sys.stderr)
    for r in c["accepted_old"]:
        print("   accepted without the gates: " + fmt(r), file=sys.stderr)


def run_phantoms(args) -> list[dict]:
    from calcscope.synth import PRESETS, generate_phantom, preset_phases

    out = []
    for preset in PRESETS:
        for phase in preset_phases(preset, ("preset", "non_contrast", "arterial", "portal_venous", "delayed")):
            for seed in args.seeds:
                try:
                    ph = generate_phantom(preset, seed=seed, phase=phase)
                except ValueError as exc:
                    print(f"skipped {preset}/{phase}/{seed}: {exc}", file=sys.stderr)
                    continue
                liver = ph.organs == 1
                calcs = [o for o in ph.truth.objects if o.type == "calcification"]
                cl = np.zeros(ph.objects.shape, np.int32)
                for n, o in enumerate(calcs, start=1):
                    cl[ph.objects == o.label] = n
                with recording() as rec:
                    det = L.find_lesions(ph.volume, liver, phase=phase, calcifications=cl)
                fac = scan_factor(ph.volume, rec["grid"])
                rows = measure(ph.volume, liver, det.labels, rec, factor=fac)
                truth = {o.label: o for o in ph.truth.objects if o.type == "lesion"}
                g = rec["grid"]
                for r in rows:
                    pc = rec["pieces"][r["piece"]]
                    sub = ph.objects[g.crop][pc["fb"]][pc["reg"]]
                    hit = [int(v) for v in np.unique(sub) if v in truth]
                    r["truth"] = [f"{truth[h].subtype} {truth[h].size_mm:g} mm" for h in hit]
                case = dict(preset=preset, phase=phase, seed=seed, lesions=det.count, corr_factor=round(fac, 2),
                            noise_hu=round(det.noise_hu, 2), candidates=rows)
                out.append(case)
                print(f"== {preset} {phase} s{seed}: {det.count} lesions, noise {det.noise_hu:.1f}, corr factor {fac:.2f}",
                      file=sys.stderr)
                for r in rows:
                    print(f"   {'TRUE ' + ','.join(r['truth']) if r['truth'] else 'false'}: " + fmt(r), file=sys.stderr)
    return out


NAMES = {"seed": "seed", "size": "size", "cnr": "cnr", "fat": "fat", "minvox": "vox", "pv": "pv", "focal_seed": "focal"}


def _ratios(r: dict) -> dict[str, float]:
    d = {k: r[k] for k in ("seed", "size", "cnr", "fat", "minvox")}
    if r["sign"] < 0 and not r["mass"]:
        d.update({k: r[k] for k in ("pv", "focal_seed") if r[k] == r[k]})
    return d


def _describe(r: dict) -> str:
    low = sorted(_ratios(r).items(), key=lambda kv: kv[1])
    dec = f"tubular (elong {r['elongation']:.2f})" if not r["tub"] else f"{NAMES[low[0][0]]} {low[0][1]:.2f}"
    nxt = ", ".join(f"{NAMES[k]} {v:.2f}" for k, v in low[1:3] if v < 50)
    extra = " (only with seeds at 3 SD)" if r.get("relaxed_only") else ""
    return f"{r['vol_ml'] * 1000:.0f} mm3, {r['contrast_hu']:.0f} HU below: **{dec}**; next {nxt}{extra}"


def summarise_real(cases: list[dict]) -> None:
    """Markdown table: per scan and mask, lesions without / with the gates and the candidates nearest to passing."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cases:
        groups.setdefault((c["scan"], c["mask"]), []).append(c)
    print("| scan | liver mask | phases | lesions without -> with the gates | accepted without the gates"
          " | strongest candidate rejected | strongest candidate the seed gate stops |")
    print("|---|---|---|---|---|---|---|")
    for (scan, mask), cs in groups.items():
        bef = "/".join(map(str, sorted({c["lesions_old"] for c in cs})))
        aft = "/".join(map(str, sorted({c["lesions"] for c in cs})))
        rows = [r for c in cs for r in c["candidates"]]
        acc = [r for r in rows if r["accepted"]]
        rej = [r for r in rows if not r["accepted"] and not r.get("relaxed_only")]
        rel = [r for r in rows if r.get("relaxed_only")]
        cell = ("**still accepted**: " + _describe(acc[0]) + "; then " if acc else "")
        cell += _describe(max(rej, key=score)) if rej else "-"
        old = [r for c in cs for r in c["accepted_old"]]
        ocell = ""
        if old:
            vols = ", ".join(str(v) for v in sorted({round(x["vol_ml"] * 1000) for x in old}))
            r = max(old, key=lambda x: x["vol_ml"])
            now = ", ".join(f"{NAMES[k]} {r[k]:.2f}" for k in ("seed", "pv", "focal_seed") if r[k] == r[k])
            ocell = f"{vols} mm3: {now}"
        rcell = _describe(max(rel, key=score)).replace(" (only with seeds at 3 SD)", "") if rel else "-"
        print(f"| {scan} | {mask} | {len(cs)} | {bef} -> {aft} | {ocell} | {cell} | {rcell} |")


def summarise_phantoms(cases: list[dict]) -> None:
    """Per truth lesion, its largest accepted hypodense detection: the distribution of each gate ratio."""
    best: dict[tuple, dict] = {}
    for c in cases:
        for r in c["candidates"]:
            hyp = r["sign"] < 0 and not r["mass"]
            for t in r["truth"]:
                k = (c["preset"], c["phase"], c["seed"], t)
                if r["accepted"] and hyp and (k not in best or r["n"] > best[k]["n"]):
                    best[k] = dict(r, case=f"{c['preset']} {c['phase']} s{c['seed']} {t}")
    rows = list(best.values())
    print(f"truth lesions with an accepted hypodense detection: {len(rows)}")
    for k in ("seed", "size", "cnr", "minvox", "pv", "focal_seed", "cnr_corr"):
        v = np.array([r[k] for r in rows], float)
        low = min(rows, key=lambda r: r[k])
        print(f"  {k:10s} min {np.nanmin(v):7.2f}  p5 {np.nanpercentile(v, 5):7.2f}  median {np.nanmedian(v):7.2f}"
              f"   (min: {low['case']}, {low['eqd_mm']:.1f} mm detected)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phantoms", action="store_true", help="the phantom kit instead of the real scans")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--scans", nargs="*", default=None, choices=list(SCANS))
    ap.add_argument("--phases", nargs="*", default=["arterial", "portal_venous", "delayed", "unknown", "non_contrast"])
    ap.add_argument("--masks", nargs="*", default=None, help="only these mask variants (e.g. auto ref_dilate1)")
    ap.add_argument("--radii", nargs="*", type=float, default=[1.0, 2.0, 3.0])
    ap.add_argument("--relaxed-k", type=float, default=3.0)
    ap.add_argument("--top", type=int, default=10, help="candidates kept per configuration")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    cases = run_phantoms(a) if a.phantoms else run_real(a)
    (summarise_phantoms if a.phantoms else summarise_real)(cases)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(cases, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
