"""Which calcification belongs to which lesion or duct.

A calcification means different things depending on where it sits
(``seeds/000_4bac6cbc2ba33c76.txt``: calcified hypodense lesions in a patient with breast
cancer suggest calcified metastases; ``seeds/001_fc47ebb88f3c1e60.txt``: metastatic
calcification lies in the centre, the periphery or the whole of a mass, a healed abscess
or hydatid cyst calcifies in its wall, and duct stones lie in dilated ducts, often in a
beaded row). :func:`associate` links each calcification finding to the lesion that
contains or rims it, else to a dilated duct it lies in, else to nothing.

Rules (distances in mm, computed on the image grid with its own spacing)
------------------------------------------------------------------------
* candidate lesions: those whose mask, dilated by ``rim_mm`` (at least 1.5 times the
  coarsest voxel spacing: a segmented boundary is uncertain by about a voxel), holds at
  least ``min_overlap`` of the calcification's voxels; the one holding most wins, and
  on a tie the larger lesion;
* ``whole`` (grit): three or more separate particles (``grit_min_particles``), mostly inside
  the lesion, spread over at least ``whole_extent_ratio`` of its longest diameter;
* ``wall``: most of a calcification of ``wall_min_voxels`` or more lies outside the
  (hole-filled) hypodense lesion (a smaller one there is ``periphery``), or
  at least ``wall_surface_fraction`` of a calcification of ``wall_min_voxels`` or more
  forms the outer surface of lesion + calcification (an eggshell; a focus of a voxel or
  two next to the boundary is too small to tell wall from periphery): location ``cyst_wall`` when the lesion is cyst-like, else
  ``in_lesion_rim``;
* the depth of the calcification's centroid inside lesion + calcification, relative to
  the largest inscribed radius, tells a centred focus (>= ``centre_depth_fraction``)
  from a peripheral one (``periphery``, location ``in_lesion_rim``);
* ``whole``: the calcification fills at least ``whole_fraction`` of the lesion, or is
  centred and spans at least ``whole_extent_ratio`` of the lesion's longest diameter
  (grit scattered through the mass); otherwise a centred focus is ``centre``
  (``in_lesion_centre``);
* ``in_duct``: not in a lesion, and at least ``min_overlap`` of its voxels within
  ``duct_rim_mm`` (at least 1.5 times the coarsest spacing) of a dilated duct (location ``along_duct``); two or more such foci on
  the same duct tree are a row of stones: shape ``beaded``, and the duct gets the sign
  ``duct_dilatation_upstream``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..detect._duct import duct_components
from ..detect._lesion import bbox_slices
from ..model import CALC_LABEL_BASE, LESION_LABEL_BASE, Finding, Volume

__all__ = ["associate", "AssociationRules"]


class AssociationRules:
    """Thresholds of :func:`associate` (documented defaults)."""

    rim_mm: float = 3.0
    min_overlap: float = 0.3
    whole_fraction: float = 0.5
    whole_extent_ratio: float = 0.5
    wall_surface_fraction: float = 0.4
    wall_min_voxels: int = 8
    grit_min_particles: int = 3
    centre_depth_fraction: float = 0.7
    duct_rim_mm: float = 2.5


def _n_of(f: Finding, base: int, prefix: str) -> int | None:
    if f.label is not None and f.label > base:
        return int(f.label - base)
    if f.id and f.id.startswith(prefix):
        try:
            return int(f.id[len(prefix):])
        except ValueError:
            return None
    return None


def _add_location(f: Finding, loc: str) -> None:
    if loc not in f.location:
        f.location = [*f.location, loc]


def _add_child(parent: Finding, child_id: str | None) -> None:
    if child_id and child_id not in parent.children:
        parent.children = [*parent.children, child_id]


def _boxes(labels: np.ndarray) -> list:
    """``ndi.find_objects`` of a label map, computed inside the box of its non-zero voxels."""
    crop = bbox_slices(labels != 0)
    if crop is None:
        return []
    off = [c.start for c in crop]
    boxes = ndi.find_objects(np.asarray(labels[crop], dtype=np.int32))
    return [None if b is None else tuple(slice(s.start + o, s.stop + o) for s, o in zip(b, off)) for b in boxes]


def _pad_box(box: tuple[slice, ...], pad: list[int], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(max(b.start - p, 0), min(b.stop + p, s)) for b, p, s in zip(box, pad, shape))


def _classify(
    calc: np.ndarray, lesion: np.ndarray, spacing: tuple[float, float, float], rules: type[AssociationRules]
) -> tuple[str, dict[str, float]]:
    """Relation of one calcification to one lesion (both cropped to the same box)."""
    from ._geometry import longest_diameter_mm

    n_c = int(calc.sum())
    inside = ndi.binary_fill_holes(lesion)
    union = ndi.binary_fill_holes(lesion | calc)
    in_frac = float((calc & inside).sum()) / max(n_c, 1)
    vol_frac = n_c / max(int(union.sum()), 1)
    d_in = ndi.distance_transform_edt(np.pad(union, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]
    r_max = float(d_in.max())
    cz, cy, cx = (int(round(v)) for v in ndi.center_of_mass(calc))
    depth_c = float(d_in[cz, cy, cx]) if union[cz, cy, cx] else 0.0
    ext_ratio = longest_diameter_mm(np.argwhere(calc), spacing) / max(longest_diameter_mm(np.argwhere(union), spacing), 1e-6)
    info = {
        "fraction_inside": in_frac, "depth_mm": depth_c, "lesion_radius_mm": r_max,
        "fraction_of_lesion": vol_frac, "extent_ratio": ext_ratio,
    }
    # share of the calcification on the outer surface of lesion + calcification: an eggshell
    # drawn around (or segmented with) the lesion is nearly all surface
    surf = union & ~ndi.binary_erosion(union, ndi.generate_binary_structure(3, 1))
    on_surface = float((calc & surf).sum()) / max(n_c, 1)
    info["fraction_on_surface"] = on_surface
    # grit: three or more particles spread over at least whole_extent_ratio of the lesion
    n_particles = int(ndi.label(calc, structure=np.ones((3, 3, 3), bool))[1])
    info["particles"] = float(n_particles)
    if vol_frac >= rules.whole_fraction:
        return "whole", info
    if n_particles >= rules.grit_min_particles and ext_ratio >= rules.whole_extent_ratio and in_frac >= 0.5:
        # scattered through the mass: where their common centroid falls says nothing
        return "whole", info
    big_enough = n_c >= rules.wall_min_voxels
    shell = big_enough and on_surface >= rules.wall_surface_fraction
    if (in_frac < 0.5 and big_enough) or shell:
        return "wall", info
    if in_frac < 0.5:
        # a focus of a few voxels at the boundary: too small to tell a wall from the periphery
        return "periphery", info
    centred = depth_c >= rules.centre_depth_fraction * r_max
    if centred and ext_ratio >= rules.whole_extent_ratio:
        return "whole", info
    if centred:
        return "centre", info
    return "periphery", info


def associate(
    calcs: list[Finding],
    lesions: list[Finding],
    ducts: list[Finding],
    *,
    volume: Volume,
    calc_labels: np.ndarray,
    lesion_labels: np.ndarray | None,
    duct_mask: np.ndarray | None,
    rules: type[AssociationRules] = AssociationRules,
) -> None:
    """Link calcifications to the lesion or duct they lie in (in place).

    Parameters
    ----------
    calcs, lesions, ducts: list of Finding
        Findings from the describers; calcification n has ``label`` 1000 + n (or id
        "calc-%03d"), lesion n ``label`` 100 + n (or id "lesion-%03d"), duct k id
        "duct-%03d" numbered as :func:`calcscope.detect.duct_components` numbers the trees.
    volume: Volume
        The CT (its spacing is used for all distances).
    calc_labels, lesion_labels: int ndarrays
        Label maps of calcifications and lesions; ``duct_mask`` the dilated ducts.
    rules: class
        Thresholds (see :class:`AssociationRules`).

    Sets on each linked calcification ``parent_id``, ``relation`` and a ``location``
    entry (``in_lesion_centre``, ``in_lesion_rim``, ``cyst_wall`` or ``along_duct``), and
    appends its id to the parent's ``children``.
    """
    calc_labels = np.asarray(calc_labels)
    if not calcs or not calc_labels.any():
        return
    sp = volume.spacing_zyx
    shape = calc_labels.shape
    les_by_n = {n: f for f in lesions if (n := _n_of(f, LESION_LABEL_BASE, "lesion-")) is not None}
    calc_boxes = _boxes(calc_labels)
    les_lab = None if lesion_labels is None else np.asarray(lesion_labels)
    duct_lab = None
    if duct_mask is not None and np.asarray(duct_mask).any():
        duct_lab = duct_components(np.asarray(duct_mask, bool))
    duct_by_k = {}
    for f in ducts:
        if f.id and f.id.startswith("duct-"):
            try:
                duct_by_k[int(f.id[5:])] = f
            except ValueError:
                pass

    # a segmented boundary is uncertain by about a voxel along each axis, so on thick
    # slices the reach grows to one and a half of the coarsest spacing
    rim_mm = max(rules.rim_mm, 1.5 * max(sp))
    duct_rim_mm = max(rules.duct_rim_mm, 1.5 * max(sp))
    reach = max(rim_mm, duct_rim_mm)
    les_boxes = _boxes(les_lab) if les_lab is not None else []
    pad_calc = [int(np.ceil(reach / s)) + 1 for s in sp]
    on_duct: dict[int, list[Finding]] = {}
    for c in calcs:
        n = _n_of(c, CALC_LABEL_BASE, "calc-")
        if n is None or n > len(calc_boxes) or calc_boxes[n - 1] is None:
            continue
        cbox = _pad_box(calc_boxes[n - 1], pad_calc, shape)
        cmask = calc_labels[cbox] == n
        n_c = int(cmask.sum())
        best = None
        if les_lab is not None:
            sub = les_lab[cbox]
            ids = np.unique(sub[sub > 0])
            for lid in ids:
                d = ndi.distance_transform_edt(sub != lid, sampling=sp)
                near = float((cmask & (d <= rim_mm)).sum()) / max(n_c, 1)
                # equal reach: the larger lesion (a focus between a mass and a small
                # hypodense fleck beside it, e.g. part of a scar, belongs to the mass)
                f_l = les_by_n.get(int(lid))
                size = float(f_l.volume_mm3 or 0.0) if f_l is not None else 0.0
                if near >= rules.min_overlap and (best is None or (near, size) > (best[1], best[2])):
                    best = (int(lid), near, size)
        if best is not None and best[0] in les_by_n and best[0] <= len(les_boxes):
            lid = best[0]
            lbox = les_boxes[lid - 1]
            box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(lbox, cbox))
            box = _pad_box(box, [1, 1, 1], shape)
            rel, _info = _classify(calc_labels[box] == n, les_lab[box] == lid, sp, rules)
            parent = les_by_n[lid]
            c.parent_id = parent.id
            c.relation = rel
            if rel == "centre":
                _add_location(c, "in_lesion_centre")
            elif rel == "wall":
                _add_location(c, "cyst_wall" if parent.kind == "cyst" else "in_lesion_rim")
            elif rel == "periphery":
                _add_location(c, "in_lesion_rim")
            else:  # whole
                _add_location(c, "in_lesion_centre")
            _add_child(parent, c.id)
            continue
        if duct_lab is not None:
            sub = duct_lab[cbox]
            ids = np.unique(sub[sub > 0])
            best_d = None
            for k in ids:
                d = ndi.distance_transform_edt(sub != k, sampling=sp)
                near = float((cmask & (d <= duct_rim_mm)).sum()) / max(n_c, 1)
                if near >= rules.min_overlap and (best_d is None or near > best_d[1]):
                    best_d = (int(k), near)
            if best_d is not None and best_d[0] in duct_by_k:
                parent = duct_by_k[best_d[0]]
                c.parent_id = parent.id
                c.relation = "in_duct"
                _add_location(c, "along_duct")
                _add_child(parent, c.id)
                on_duct.setdefault(best_d[0], []).append(c)
    for k, foci in on_duct.items():
        duct = duct_by_k[k]
        if "duct_dilatation_upstream" not in duct.signs:
            duct.signs = [*duct.signs, "duct_dilatation_upstream"]
        if len(foci) >= 2:
            for c in foci:
                c.shape = "beaded"
