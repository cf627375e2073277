"""Presets: the clinical situations of ``../shared/seeds/`` as lists of finding specs.

* ``calcified_metastases``: several hypodense metastases with calcification, portal phase
  (seeds/000_4bac6cbc2ba33c76.txt: breast cancer, multiple hypodense calcified lesions;
  seeds/001_fc47ebb88f3c1e60.txt: metastatic calcification central, peripheral or throughout,
  grit-like, plaque-like or speckled, mostly in lesions over 3 cm).
* ``liver_metastases``: several hypodense metastases without calcification, portal phase, in
  both lobes, a third with a bull's-eye rim (seeds/004_bed3c69a800ae988.txt: low-density or
  mixed masses, mostly scattered or multiple, typically with a bull's-eye look).
* ``isolated_calcification``: one small focus in the right lobe, no duct dilatation (seeds/001).
* ``duct_stones``: left-lobe intrahepatic ducts dilated upstream of a narrowing, with beaded
  stones inside (seeds/001: stones run along the ducts, left lobe more often).
* ``hydatid_cyst``: a cyst whose wall is calcified, with daughter cysts (seeds/001).
* ``schistosomiasis``: capsular calcification plus septal calcification in the parenchyma (seeds/001).
* ``tuberculosis``: many 8-12 mm calcifications spread evenly in both lobes (seeds/001).
* ``healed_abscess``: a calcified ring outlining the old abscess cavity (seeds/001).
* ``hemangioma``: hemangioma with coarse calcification of its septa (seeds/001).
* ``fibrolamellar``: large mass with a central scar and stellate calcification (seeds/001).
* ``simple_cyst``: fluid cysts without calcification.
* ``normal``: no finding; enhanced vessels only (a false-positive test).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ._truth import ObjectSpec

__all__ = ["PRESETS", "PRESET_PHASE", "preset_phases", "preset_specs", "fov_scale", "derive_distribution"]

PRESETS: tuple[str, ...] = (
    "normal",
    "calcified_metastases",
    "isolated_calcification",
    "duct_stones",
    "hydatid_cyst",
    "schistosomiasis",
    "tuberculosis",
    "healed_abscess",
    "hemangioma",
    "fibrolamellar",
    "simple_cyst",
    # appended, not inserted: benchmarks derive phantom seeds from a preset's position
    "liver_metastases",
)

#: default contrast phase of each preset
PRESET_PHASE: dict[str, str] = {p: "portal_venous" for p in PRESETS}
PRESET_PHASE.update({"isolated_calcification": "non_contrast", "tuberculosis": "non_contrast", "schistosomiasis": "non_contrast"})


def preset_phases(preset: str, phases: Iterable[str]) -> list[str]:
    """``phases`` for one preset, ``"preset"`` standing for its own phase, each phase once, in order."""
    out: list[str] = []
    for p in phases:
        q = PRESET_PHASE[preset] if p == "preset" else p
        if q not in out:
            out.append(q)
    return out


def fov_scale(shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float]) -> float:
    """Preset size/count scale for a grid: 1 for an in-plane field of view of 300 mm or more, else 0.75."""
    fov_mm = min(shape_zyx[1] * spacing_zyx[1], shape_zyx[2] * spacing_zyx[2])
    return 1.0 if fov_mm >= 300 else 0.75


def _r(rng: np.random.Generator, lo: float, hi: float, nd: int = 1) -> float:
    return round(float(rng.uniform(lo, hi)), nd)


def preset_specs(name: str, *, seed: int, scale: float = 1.0) -> list[ObjectSpec]:
    """The findings of a preset, with sizes drawn from ``seed``.

    ``scale`` (0.5-1) shrinks large lesions and counts for small fields of view.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
    rng = np.random.default_rng([int(seed), 11])
    S = ObjectSpec
    out: list[ObjectSpec] = []
    if name == "normal":
        return out
    if name == "calcified_metastases":
        n = int(rng.integers(4, 7))
        kinds = ["coarse_centre", "grit_whole", "punctate_periphery", "linear_periphery", "coarse_centre", "none", "grit_whole"]
        for i in range(n):
            lobe = "right" if i % 3 != 2 else "left"
            size = round(_r(rng, 18, 42) * scale * (1.0 if lobe == "right" else 0.7), 1)
            mid = f"metastasis-{i + 1}"
            rim = "target" if i % 3 == 1 else "none"
            out.append(S(id=mid, type="lesion", subtype="metastasis", size_mm=size, rim=rim, lobe=lobe))
            kind = kinds[i % len(kinds)]
            if kind == "coarse_centre":
                out.append(S(type="calcification", subtype="coarse", size_mm=round(min(size * 0.35, 12.0), 1), parent=mid, relation="centre"))
            elif kind == "grit_whole":
                out.append(S(type="calcification", subtype="grit", size_mm=round(size * 0.6, 1), parent=mid, relation="whole", count=int(rng.integers(8, 15))))
            elif kind == "punctate_periphery":
                for _ in range(2):
                    out.append(S(type="calcification", subtype="punctate", size_mm=_r(rng, 1.5, 3.0), parent=mid, relation="periphery"))
            elif kind == "linear_periphery":
                out.append(S(type="calcification", subtype="linear", size_mm=round(min(size * 0.4, 12.0), 1), parent=mid, relation="periphery"))
        return out
    if name == "liver_metastases":
        n = int(rng.integers(4, 8))
        for i in range(n):
            lobe = "right" if i % 3 != 2 else "left"
            # 12-40 mm: the small ones test detection, the large ones the mask around them
            size = round(_r(rng, 12, 40) * scale * (1.0 if lobe == "right" else 0.7), 1)
            rim = "target" if i % 3 == 1 else "none"
            out.append(S(id=f"metastasis-{i + 1}", type="lesion", subtype="metastasis", size_mm=size, rim=rim, lobe=lobe))
        return out
    if name == "isolated_calcification":
        return [S(type="calcification", subtype="punctate", size_mm=_r(rng, 2.0, 4.0), lobe="right", depth="deep")]
    if name == "duct_stones":
        out.append(S(id="duct-1", type="duct", subtype="dilated", size_mm=_r(rng, 6.0, 8.0), lobe="left"))
        for _ in range(int(rng.integers(3, 6))):
            out.append(S(type="calcification", subtype="beaded", size_mm=_r(rng, 3.0, 5.0), parent="duct-1", relation="in_duct"))
        return out
    if name == "hydatid_cyst":
        size = _r(rng, 50, 75) * scale
        out.append(S(id="hydatid-1", type="lesion", subtype="hydatid", size_mm=size, lobe="right"))
        out.append(S(type="calcification", subtype="ring", size_mm=size + 2.0, thickness_mm=_r(rng, 1.5, 2.5), parent="hydatid-1", relation="wall", arc_fraction=round(float(rng.uniform(0.75, 1.0)), 2)))
        return out
    if name == "schistosomiasis":
        for i in range(int(rng.integers(5, 8))):
            out.append(S(type="calcification", subtype="capsular", size_mm=_r(rng, 14, 26), thickness_mm=_r(rng, 1.5, 2.5), lobe="right" if i % 2 == 0 else "left"))
        for i in range(int(rng.integers(6, 10))):
            out.append(S(type="calcification", subtype="septal", size_mm=_r(rng, 18, 35), thickness_mm=_r(rng, 1.4, 2.2), lobe="right" if i % 2 == 0 else "left"))
        return out
    if name == "tuberculosis":
        n = int(rng.integers(14, 22) * max(0.5, scale))
        for i in range(n):
            out.append(S(type="calcification", subtype="coarse", size_mm=_r(rng, 8.0, 12.0), hu=_r(rng, 450, 850, 0), lobe="right" if i % 5 < 3 else "left"))
        return out
    if name == "healed_abscess":
        size = _r(rng, 22, 38) * scale
        out.append(S(id="abscess-1", type="lesion", subtype="abscess", size_mm=size, hu=None, rim="none"))
        out.append(S(type="calcification", subtype="ring", size_mm=size + 2.5, thickness_mm=_r(rng, 1.8, 3.0), parent="abscess-1", relation="wall", arc_fraction=round(float(rng.uniform(0.7, 0.95)), 2)))
        return out
    if name == "hemangioma":
        size = _r(rng, 35, 60) * scale
        out.append(S(id="hemangioma-1", type="lesion", subtype="hemangioma", size_mm=size, lobe="right"))
        out.append(S(type="calcification", subtype="coarse", size_mm=round(min(10.0, size * 0.22), 1), parent="hemangioma-1", relation="centre"))
        return out
    if name == "fibrolamellar":
        size = _r(rng, 60, 85) * scale
        out.append(S(id="fibrolamellar-1", type="lesion", subtype="fibrolamellar", size_mm=size))
        out.append(S(type="calcification", subtype="stellate", size_mm=round(size * 0.3, 1), parent="fibrolamellar-1", relation="centre"))
        return out
    if name == "simple_cyst":
        out.append(S(type="lesion", subtype="cyst", size_mm=_r(rng, 25, 40) * scale, lobe="right"))
        out.append(S(type="lesion", subtype="cyst", size_mm=_r(rng, 8, 15), lobe="left"))
        return out
    raise AssertionError(name)


def derive_distribution(calcs: list[tuple[str, str | None, str | None, np.ndarray]]) -> str | None:
    """Distribution class of calcifications from (subtype, lobe, parent, centre_mm).

    none -> None; any capsular or septal -> capsular_septal_network; one object (or all in
    one lesion/duct) -> single/clustered; every object inside a lesion (several lesions) ->
    clustered, the "clustered within lesions" class of calcified metastases; eight or more
    free objects in both lobes -> diffuse_even; all within 40 mm of their mean -> clustered;
    otherwise scattered.
    """
    if not calcs:
        return None
    subtypes = {c[0] for c in calcs}
    if subtypes & {"capsular", "septal"}:
        return "capsular_septal_network"
    parents = {c[2] for c in calcs}
    if len(calcs) == 1 or (len(parents) == 1 and None not in parents and not subtypes & {"beaded"}):
        return "single"
    if None not in parents and not subtypes & {"beaded"}:
        return "clustered"
    pts = np.array([c[3] for c in calcs])
    lobes = {c[1] for c in calcs}
    if len(calcs) >= 8 and lobes >= {"right", "left"} and None in parents:
        return "diffuse_even"
    if np.max(np.linalg.norm(pts - pts.mean(axis=0), axis=1)) <= 40.0:
        return "clustered"
    return "scattered"
