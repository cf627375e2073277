"""Detection of dilated intrahepatic bile ducts.

A dilated duct is a tubular, often branching structure of near-water attenuation (bile,
about 0-30 HU) running through the liver (cf. ``seeds/001_fc47ebb88f3c1e60.txt``: stones
sit inside dilated, branching intrahepatic ducts, whereas isolated parenchymal
calcifications come without duct dilatation).

Method
------
1. The liver is cropped, block-averaged to about 1.5 mm and smoothed inside the mask
   (shared with the lesion detector; calcium and stones are left out of the smoothing,
   so a stone does not interrupt its duct).
2. Candidate voxels are darker than ``bile_max_hu`` *and* darker than the parenchyma by
   ``min_contrast_hu``; the partial-volume rim under the capsule is only admitted next
   to a deep candidate.
3. Each 26-connected candidate component is skeletonised
   (:func:`skimage.morphology.skeletonize`); its length is the summed length of the
   skeleton's edges in mm and its calibre is twice the distance map (mm) along the
   skeleton. Components that are long (``min_length_mm``), thin relative to their
   length (tubular) and whose mean HU is bile-like are kept.
4. Each kept component is re-segmented at full resolution at the level half-way between
   the parenchyma and the duct content.

Limitation: on non-contrast (and arterial) CT the portal and hepatic veins (blood about 35-45 HU against
liver about 55 HU) are hypodense tubes too. They are told apart here only by their
attenuation (``bile_max_hu``, default 30 HU); an anaemic patient's blood, or a duct with
dense (infected, contrast-mixed) bile, can fall on the wrong side of that line, and thin
ducts (3-4 mm at 1.5 x 1.5 x 2.5 mm voxels) are blurred above 30 HU by partial volume and
missed in those phases unless they join a near-water part of at least ``min_seed_mm3``
(hysteresis growth through deep voxels darker than the parenchyma by ``min_contrast_hu``;
the water ceiling is then applied to the median HU of the tube's centre, see
``core_fraction``). In portal-venous and delayed phases, where veins enhance, the
water ceiling is dropped. The connection of veins to the IVC / portal trunk is not
modelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import cc3d
import numpy as np
from scipy import ndimage as ndi

from ..model import Phase, Volume
from ._lesion import (
    LesionDetection,
    _block_sum,
    bbox_slices,
    label_centroids,
    component_shape,
    edt_mm,
    fat_fraction,
    is_tubular,
    label_array_of,
    liver_mask_of,
    normalized_smooth,
    phase_of,
    prepare_liver_grid,
)

__all__ = ["DuctDetection", "find_ducts", "duct_components", "measure_duct_tree", "skeleton_length_mm"]


@dataclass(eq=False)
class DuctDetection:
    """Result of :func:`find_ducts`.

    Attributes
    ----------
    mask: (Z, Y, X) ndarray of bool
        Dilated intrahepatic bile ducts.
    labels: (Z, Y, X) ndarray of int32
        Connected duct trees 1..k numbered by centroid (z, y, x), as
        :func:`duct_components` numbers them.
    diameters_mm: list of float
        Median calibre of each tree along its centre line, mm.
    max_diameters_mm: list of float
        Largest calibre of each tree, mm.
    lengths_mm: list of float
        Centre-line length of each tree, mm.
    components: list of dict
        Per tree: label, length_mm, diameter_mm, max_diameter_mm, branch_points, hu_mean.
    rejected: dict
        Reason -> number of candidate components rejected.
    lesions_in_duct: list of int
        Labels of the ``lesions`` given that lie in a found duct and are no wider than it
        (a stretch of the duct, now part of ``mask``); drop them from the lesions with
        :func:`calcscope.detect.drop_lesions`.
    """

    mask: np.ndarray
    labels: np.ndarray
    diameters_mm: list[float] = field(default_factory=list)
    max_diameters_mm: list[float] = field(default_factory=list)
    lengths_mm: list[float] = field(default_factory=list)
    components: list[dict[str, float]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    lesions_in_duct: list[int] = field(default_factory=list)


def duct_components(mask: np.ndarray) -> np.ndarray:
    """26-connected components of a duct mask numbered 1..k by centroid (z, y, x)."""
    mask = np.asarray(mask, bool)
    out = np.zeros(mask.shape, np.int32)
    crop = bbox_slices(mask)
    if crop is None:
        return out
    lab = cc3d.connected_components(mask[crop], connectivity=26).astype(np.int32)
    k = int(lab.max())
    if k > 1:
        cents = label_centroids(lab, k)
        order = sorted(range(k), key=lambda i: cents[i])
        remap = np.zeros(k + 1, np.int32)
        for new, old in enumerate(order, start=1):
            remap[old + 1] = new
        lab = remap[lab]
    out[crop] = lab
    return out


def skeleton_length_mm(
    skel: np.ndarray, spacing_zyx: tuple[float, ...], *, min_spur_mm: float = 0.0
) -> tuple[float, int]:
    """Length (mm) of a 3-D skeleton and its number of branch points.

    The skeleton voxels form a graph with an edge of length ``|offset * spacing|`` between
    26-adjacent voxels; its minimum spanning tree removes the redundant diagonal edges
    of staircase lines, and the tree's total edge length is the centre-line length.
    Branches that end freely and are shorter than ``min_spur_mm`` (thinning artefacts
    of a thick tube) are pruned first. Branch points are tree nodes of degree three
    or more.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    pts = np.argwhere(skel)
    n = len(pts)
    if n <= 1:
        return (float(min(spacing_zyx)) if n else 0.0), 0
    sp = np.asarray(spacing_zyx, float)
    index = -np.ones(np.asarray(skel.shape) + 2, np.int64)
    index[tuple((pts + 1).T)] = np.arange(n)
    rows, cols, w = [], [], []
    for off in np.argwhere(np.ones((3, 3, 3))) - 1:
        if not off.any() or tuple(off) <= (0, 0, 0):
            continue
        nb = index[tuple((pts + 1 + off).T)]
        ok = nb >= 0
        rows.append(np.flatnonzero(ok))
        cols.append(nb[ok])
        w.append(np.full(int(ok.sum()), float(np.sqrt(((off * sp) ** 2).sum()))))
    g = coo_matrix((np.concatenate(w), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    mst = minimum_spanning_tree(g).tocoo()
    adj: list[dict[int, float]] = [dict() for _ in range(n)]
    for a, b, wt in zip(mst.row, mst.col, mst.data):
        adj[int(a)][int(b)] = float(wt)
        adj[int(b)][int(a)] = float(wt)
    if min_spur_mm > 0:
        for _ in range(2):
            leaves = [i for i in range(n) if len(adj[i]) == 1]
            for leaf in leaves:
                path, length, prev, cur = [leaf], 0.0, -1, leaf
                while len(adj[cur]) == 2 or cur == leaf:
                    nxt = [k for k in adj[cur] if k != prev]
                    if not nxt:
                        break
                    length += adj[cur][nxt[0]]
                    prev, cur = cur, nxt[0]
                    if len(adj[cur]) != 2:
                        break
                    path.append(cur)
                if len(adj[cur]) >= 3 and length < min_spur_mm:
                    for a, b in zip(path, path[1:] + [cur]):
                        adj[a].pop(b, None)
                        adj[b].pop(a, None)
    total = sum(sum(d.values()) for d in adj) / 2.0
    return float(total), int(sum(1 for d in adj if len(d) >= 3))


def _end_points(skel: np.ndarray) -> int:
    """Number of skeleton voxels with exactly one 26-neighbour in the skeleton."""
    s = skel.astype(np.uint8)
    n = ndi.convolve(s, np.ones((3, 3, 3), np.uint8), mode="constant") - s
    return int((skel & (n == 1)).sum())


def measure_duct_tree(comp: np.ndarray, spacing_zyx: tuple[float, ...]) -> dict[str, float]:
    """Length, calibre and branching of one tubular component (cropped to its box).

    The component is resampled to isotropic voxels of the finest spacing before
    skeletonisation (thinning on anisotropic voxels leaves spurs); its length is the
    skeleton's, its mean calibre that of the mean cross-section (volume / length, with
    about one radius added back at each free end where the skeleton stops short), and
    its largest calibre the 95th percentile of twice the distance map on the skeleton.
    """
    from skimage.morphology import skeletonize

    iso = float(min(spacing_zyx))
    zoom = [s / iso for s in spacing_zyx]
    padded = np.pad(comp, 2).astype(np.float32)
    if any(abs(z - 1.0) > 1e-3 for z in zoom):
        padded = ndi.zoom(padded, zoom, order=1) >= 0.5
    else:
        padded = padded > 0.5
    sp_iso = (iso, iso, iso)
    skel = skeletonize(padded).astype(bool)
    d = edt_mm(padded, sp_iso)
    if not skel.any():
        skel = padded & (d == d.max())
    # the distance map reaches the first voxel centre outside: half a voxel past the edge
    calib = np.maximum(2.0 * d[skel] - iso, iso)
    length, branches = skeleton_length_mm(skel, sp_iso, min_spur_mm=2.0 * float(np.median(calib)))
    vol = float(comp.sum()) * float(np.prod(spacing_zyx))
    r0 = float(np.median(calib)) / 2.0
    eff_len = max(length + _end_points(skel) * r0, iso)
    return {
        "length_mm": float(length),
        "diameter_mm": 2.0 * float(np.sqrt(vol / (np.pi * eff_len))),
        "max_diameter_mm": float(np.percentile(calib, 95)),
        "branch_points": float(branches),
    }


def _core_hu(
    region: np.ndarray, image: np.ndarray, spacing_zyx: tuple[float, ...], *, core_fraction: float
) -> float:
    """Median HU of the centre of a tube: voxels at least ``core_fraction`` of its largest depth.

    The depth is the distance (mm) to the region's outside; the voxels of the central
    part are little touched by partial volume with the surrounding parenchyma.
    """
    if not region.any():
        return float("inf")
    d = edt_mm(np.pad(region, 1), spacing_zyx)[1:-1, 1:-1, 1:-1]
    centre = region & (d >= core_fraction * float(d.max()))
    return float(np.median(image[centre]))


def _upsample(a: np.ndarray, factors: tuple[int, ...], shape: tuple[int, ...]) -> np.ndarray:
    """Repeat a detection-grid array back to the full-resolution crop ``shape``."""
    for ax, f in enumerate(factors):
        if f > 1:
            a = np.repeat(a, f, axis=ax)
    return a[tuple(slice(0, n) for n in shape)]


#: a lesion at least this wide (equivalent-sphere diameter, mm) owns the calcifications
#: beside it: they do not bridge duct pieces (see :func:`_stone_bridges`)
MASS_MIN_DIAMETER_MM = 10.0


def _mass_zone(les: np.ndarray | None, grid: Any) -> np.ndarray | None:
    """Detection-grid voxels in or within two voxels of a mass (a lesion of ``MASS_MIN_DIAMETER_MM`` or more)."""
    if les is None or not np.any(les):
        return None
    les_c = np.asarray(les[grid.crop])
    counts = np.bincount(les_c.ravel())
    min_vox = np.pi / 6.0 * MASS_MIN_DIAMETER_MM**3 / float(np.prod(np.asarray(grid.spacing_zyx) / np.asarray(grid.factors)))
    masses = np.flatnonzero(counts >= min_vox)
    masses = masses[masses > 0]
    if masses.size == 0:
        return None
    full = ndi.generate_binary_structure(3, 3)
    return ndi.binary_dilation(_block_sum(np.isin(les_c, masses), grid.factors) > 0, full, iterations=2)


def _stone_bridges(cand: np.ndarray, calc: np.ndarray | None, near_mass: np.ndarray | None, grid: Any) -> np.ndarray:
    """Detection-grid voxels of calcifications (and a one-voxel halo) that touch a duct candidate.

    A stone fills the lumen of its duct, so the dark tube stops on either side of it and a
    row of stones cuts one duct into pieces too short to pass as a duct. The stones are
    known (the calcification stage runs first), so where a stone touches a candidate tube
    its blocks join the candidate; a calcification away from every dark tube adds nothing,
    and one in or beside a mass (``near_mass``, see :func:`_mass_zone`) belongs to that
    mass. Smaller lesions do not own their stones: a short stretch of dilated duct between
    two stones reads as a small round lesion.
    """
    if calc is None or not np.any(calc):
        return np.zeros(cand.shape, bool)
    full = ndi.generate_binary_structure(3, 3)
    stones = _block_sum(np.asarray(calc[grid.crop]) > 0, grid.factors) > 0
    if near_mass is not None:
        lab_s = cc3d.connected_components(stones, connectivity=26)
        bad = np.unique(lab_s[near_mass & stones])
        stones &= ~np.isin(lab_s, bad[bad > 0])
    zone = ndi.binary_dilation(stones, full) & grid.liver & ~cand
    lab = cc3d.connected_components(zone | cand, connectivity=26)
    touching = np.unique(lab[cand])
    return zone & np.isin(lab, touching[touching > 0])


def _lesions_in_ducts(
    mask: np.ndarray, les: np.ndarray | None, spacing: tuple[float, float, float], *, max_ratio: float, reach_mm: float
) -> list[int]:
    """Labels of lesions lying in a duct of ``mask`` and no wider than it (see :func:`find_ducts`)."""
    if les is None or not mask.any() or not np.any(les):
        return []
    labels = duct_components(mask)
    out: list[int] = []
    boxes = ndi.find_objects(np.asarray(les, np.int32))
    pad = [int(np.ceil(reach_mm / s)) + 1 for s in spacing]
    vox = float(np.prod(spacing))
    for k, box in enumerate(boxes, start=1):
        if box is None:
            continue
        bb = tuple(slice(max(b.start - q, 0), min(b.stop + q, n)) for b, q, n in zip(box, pad, les.shape))
        lm = les[bb] == k
        dl = labels[bb]
        if not dl.any():
            continue
        near = ndi.distance_transform_edt(dl == 0, sampling=spacing) <= reach_mm
        if float((lm & near).sum()) < 0.5 * float(lm.sum()):
            continue
        ids, counts = np.unique(dl[near & lm & (dl > 0)], return_counts=True)
        if ids.size == 0:
            ids, counts = np.unique(dl[dl > 0], return_counts=True)
        tree = labels == int(ids[np.argmax(counts)])
        tb = bbox_slices(tree)
        if tb is None:
            continue
        meas = measure_duct_tree(tree[tb], spacing)
        # two calibre estimates (mean cross-section, skeleton distance): the larger one
        calibre = max(meas["diameter_mm"], meas["max_diameter_mm"])
        d_eq = (6.0 * float(lm.sum()) * vox / np.pi) ** (1.0 / 3.0)
        if d_eq <= max_ratio * calibre:
            out.append(k)
    return out


def find_ducts(
    volume: Volume,
    liver: Any,
    *,
    phase: Any = None,
    lesions: Any = None,
    calcifications: Any = None,
    bile_max_hu: float = 30.0,
    min_contrast_hu: float = 20.0,
    min_tree_contrast_hu: float = 40.0,
    min_deep_fraction: float = 0.5,
    max_fat_fraction: float = 0.05,
    k_noise: float = 3.0,
    min_length_mm: float = 20.0,
    min_diameter_mm: float = 2.5,
    max_diameter_mm: float = 15.0,
    detection_spacing_mm: float = 1.5,
    smoothing_mm: float = 1.0,
    rim_mm: float = 3.0,
    core_fraction: float = 0.6,
    min_seed_mm3: float = 50.0,
    lesion_in_duct_mm: float = 2.0,
    lesion_in_duct_ratio: float = 1.5,
) -> DuctDetection:
    """Find dilated intrahepatic bile ducts inside the liver mask.

    Parameters
    ----------
    volume: Volume
        CT in HU.
    liver: bool ndarray or object with ``mask``
        Liver mask on the grid of ``volume``.
    phase: Phase, str or PhaseEstimate, optional
        Contrast phase. In portal-venous and delayed phases any tube darker than the
        parenchyma by ``min_contrast_hu`` qualifies (veins are bright); otherwise the
        content must also be near water (``bile_max_hu``), to keep unenhanced veins out.
    lesions: int label array or LesionDetection, optional
        Segmented lesions; their voxels are not duct candidates. Given the whole
        LesionDetection, its smoothed detection grid is reused (about half the cost).
    calcifications: int label array or CalcificationDetection, optional
        Calcifications (stones); left out of the smoothing so they do not break a duct.
    bile_max_hu: float
        Highest mean HU of a duct's content (bile is near water).
    min_contrast_hu: float
        Least parenchyma-minus-duct difference of a candidate voxel and core, HU.
    min_tree_contrast_hu: float
        In portal-venous / delayed phases, least parenchyma-minus-median HU of a whole
        accepted tree (partial volume makes a 4-6 mm duct of bile read about 40 HU in a
        105 HU liver; hypodense tumour tissue is usually closer to the parenchyma).
    k_noise: float
        Candidate voxels are also darker than the parenchyma by this many SDs of the
        smoothed parenchyma.
    min_deep_fraction: float
        Least fraction of a tree's voxels deeper than ``rim_mm`` below the capsule (a dark
        band along the surface is partial volume with fat).
    max_fat_fraction: float
        Most fat-density voxels (fraction, see :func:`calcscope.detect._lesion.fat_fraction`)
        a tree may hold: bile is near water, and partial volume with the liver around a
        duct only raises its HU, whereas the fat of the fissures (ligamentum teres and
        venosum) and of the porta hepatis, which an automatic liver mask often takes in,
        forms dark branching bands that are otherwise duct-like.
    min_length_mm, min_diameter_mm, max_diameter_mm: float
        Accepted centre-line length and median calibre of a duct tree, mm.
    detection_spacing_mm, smoothing_mm, rim_mm: float
        Detection grid, smoothing and subcapsular rim depth (see
        :func:`calcscope.detect.find_lesions`).
    core_fraction: float
        The near-water test uses the median HU of the voxels at least this fraction of
        the tube's largest depth from its edge (the centre, little blurred by partial volume).
    min_seed_mm3: float
        Outside the contrast phases, least volume of a near-water (``bile_max_hu``) part from
        which a candidate grows into slightly denser deep voxels; smaller near-water specks in
        an unenhanced vein are noise and do not grow.
    lesion_in_duct_mm, lesion_in_duct_ratio: float
        A lesion with most of its voxels within ``lesion_in_duct_mm`` (at least 1.5 times the
        coarsest spacing) of a found duct and an
        equivalent-sphere diameter at most ``lesion_in_duct_ratio`` times that duct's
        largest calibre is a piece of the duct (listed in ``lesions_in_duct``); a mass
        beside a duct is wider than the duct or lies mostly outside this reach.

    Returns
    -------
    DuctDetection
    """
    ph = phase_of(phase)
    rim_mm = max(rim_mm, 1.5 * max(volume.spacing_zyx[1:]))
    # a tube one voxel thick cannot be told from noise: at least 1.5 in-plane voxels wide
    min_diameter_mm = max(min_diameter_mm, 1.5 * max(volume.spacing_zyx[1:]))
    # in portal-venous and delayed phases the veins are bright, so any clearly hypodense
    # tube is a duct; on non-contrast (and arterial / unknown) scans unenhanced veins are
    # hypodense tubes too, and only near-water content marks a duct
    contrast_phase = ph in (Phase.PORTAL_VENOUS, Phase.DELAYED)
    liv = liver_mask_of(liver)
    calc = label_array_of(calcifications)
    les = label_array_of(lesions)
    exclude = None if calc is None else calc > 0
    empty = np.zeros(volume.shape, bool)
    grid = lesions.grid if isinstance(lesions, LesionDetection) else None
    if grid is not None and grid.mean_hu.shape == grid.liver.shape:
        # same crop, block means and statistics; only the smoothing scale differs
        grid = replace(grid, smoothed=normalized_smooth(grid.mean_hu, grid.weight, grid.spacing_zyx, smoothing_mm))
    else:
        grid = prepare_liver_grid(
            volume, liv, exclude=exclude, detection_spacing_mm=detection_spacing_mm,
            smoothing_mm=smoothing_mm, rim_mm=rim_mm,
        )
    if grid is None:
        return DuctDetection(mask=empty, labels=np.zeros(volume.shape, np.int32))
    p, sn = grid.parenchyma_hu, grid.smoothed_noise_hu
    ceiling = p - min_contrast_hu if contrast_phase else bile_max_hu
    thr = min(ceiling, p - max(min_contrast_hu, k_noise * sn))
    cand = (grid.smoothed < thr) & grid.liver
    if not contrast_phase:
        # hysteresis: a thin duct's partial-volume stretches read above bile, so near-water
        # seeds grow through deep voxels clearly darker than the parenchyma; the near-water
        # test is then made on each tube's core (see _core_hu), not on its blurred edge
        loose = (grid.smoothed < p - max(min_contrast_hu, k_noise * sn)) & grid.liver & grid.deep
        grown = cc3d.connected_components(cand | loose, connectivity=26)
        # only a near-water part big enough not to be a noise speck in a vein seeds growth
        strict = cc3d.connected_components(cand, connectivity=26)
        sizes = np.bincount(strict.ravel()) * float(np.prod(grid.spacing_zyx))
        big = np.flatnonzero(sizes >= min_seed_mm3)
        seeds = np.unique(grown[np.isin(strict, big[big > 0])])
        cand = cand | np.isin(grown, seeds[seeds > 0])
    if les is not None:
        les_crop = les[grid.crop] > 0
        # a detection-grid voxel is a lesion voxel when most of its block is
        frac = _block_sum(les_crop, grid.factors) / float(np.prod(grid.factors))
        cand &= frac < 0.5
    near_mass = _mass_zone(les, grid)
    if near_mass is not None:
        # the partial-volume edge of a mass (left outside its label) is a dark crescent, a
        # curved sheet hugging the mass: not a duct; a duct leaving the mass is found beyond
        cand &= ~(near_mass & ndi.binary_dilation(frac > 0, ndi.generate_binary_structure(3, 3)))
    deep_part = cand & grid.deep
    near = ndi.distance_transform_edt(~deep_part, sampling=grid.spacing_zyx) <= rim_mm + max(grid.spacing_zyx)
    cand &= grid.deep | near
    bridge = _stone_bridges(cand, calc, near_mass, grid)
    cand |= bridge

    sp = grid.spacing_zyx
    lab = cc3d.connected_components(cand, connectivity=26)
    rejected = {"short": 0, "not_tubular": 0, "calibre": 0, "attenuation": 0}
    kept: list[tuple[tuple[slice, ...], np.ndarray, dict[str, float]]] = []
    for i, box in enumerate(ndi.find_objects(lab), start=1):
        if box is None:
            continue
        comp = lab[box] == i
        # the principal-axis extent is at most the box diagonal plus a voxel: a small box
        # is short without computing the distance map
        diag = float(np.linalg.norm([(b.stop - b.start) * s_ for b, s_ in zip(box, sp)]))
        if diag + min(sp) < 0.75 * min_length_mm:
            rejected["short"] += 1
            continue
        shape = component_shape(comp, sp)
        if shape["extent_mm"] < 0.75 * min_length_mm:
            rejected["short"] += 1
            continue
        if not is_tubular(shape, min_ratio=3.0, min_elongation=3.0):
            rejected["not_tubular"] += 1
            continue
        tree = measure_duct_tree(comp, sp)
        if tree["length_mm"] < min_length_mm:
            rejected["short"] += 1
            continue
        if not (min_diameter_mm <= tree["diameter_mm"] <= max_diameter_mm):
            rejected["calibre"] += 1
            continue
        kept.append((box, comp, tree))

    # full-resolution masks and attenuation check
    bridge_full = _upsample(bridge, grid.factors, liv[grid.crop].shape)
    full_img = volume.array[grid.crop].astype(np.float32)
    full_liv = liv[grid.crop]
    fsp = volume.spacing_zyx
    out = np.zeros(full_liv.shape, bool)
    for box, comp, tree in kept:
        lo = [b.start * f for b, f in zip(box, grid.factors)]
        hi = [min(b.stop * f, n) for b, f, n in zip(box, grid.factors, full_liv.shape)]
        pad = [int(np.ceil(3.0 / s)) + 1 for s in fsp]
        fb = tuple(slice(max(a - q, 0), min(b + q, n)) for a, b, q, n in zip(lo, hi, pad, full_liv.shape))
        core = np.zeros(tuple(s.stop - s.start for s in fb), bool)
        up = comp
        for ax, f in enumerate(grid.factors):
            if f > 1:
                up = np.repeat(up, f, axis=ax)
        off = [a - s.start for a, s in zip(lo, fb)]
        sl = tuple(slice(o, min(o + u, c)) for o, u, c in zip(off, up.shape, core.shape))
        core[sl] = up[tuple(slice(0, s.stop - s.start) for s in sl)]
        liv_b = full_liv[fb]
        core &= liv_b
        # the stones and their partial-volume halo are not bile: left out of the HU tests
        valid = liv_b & ~grid.excluded_full[fb] & ~bridge_full[fb]
        raw = full_img[fb]
        content = raw[core & valid]
        if content.size == 0:
            continue
        duct_hu = float(np.median(content))
        core_hu = _core_hu(core & valid, raw, fsp, core_fraction=core_fraction)
        if core_hu > ceiling or duct_hu > p - min_contrast_hu or p - core_hu < min_contrast_hu:
            rejected["attenuation"] += 1
            continue
        if fat_fraction(content, noise_hu=grid.noise_hu) > max_fat_fraction:
            rejected["fat"] = rejected.get("fat", 0) + 1
            continue
        sm = normalized_smooth(raw, valid, fsp, 0.7)
        zone = (ndi.distance_transform_edt(~core, sampling=fsp) <= 2.0) & liv_b
        reg = (sm < 0.5 * (p + duct_hu)) & zone
        # stones inside the duct belong to it, and so does the halo joining the lumen on
        # either side of a stone
        reg |= grid.excluded_full[fb] & ndi.binary_dilation(reg, iterations=2) & liv_b
        reg |= bridge_full[fb] & core
        lab_r = cc3d.connected_components(reg, connectivity=26)
        ids = np.unique(lab_r[core & reg])
        reg = np.isin(lab_r, ids[ids > 0])
        out[fb] |= reg
        tree["hu_mean"] = duct_hu
        tree["core_hu"] = core_hu

    mask = empty
    mask[grid.crop] = out
    not_bile = np.zeros(mask.shape, bool)
    not_bile[grid.crop] = bridge_full | grid.excluded_full
    labels = duct_components(mask)
    # final check on the full-resolution trees; the cheap tests first, the skeleton last
    pad_rim = [int(np.ceil(rim_mm / sp_)) + 1 for sp_ in fsp]
    measured: dict[tuple, dict[str, float]] = {}  # (box, voxel count) -> measure_duct_tree
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        m = labels[box] == k
        # the tree's content without its stones and their halo
        content_m = m & ~not_bile[box]
        vals_tree = volume.array[box][content_m if content_m.any() else m]
        hu_tree = float(np.median(vals_tree))
        # depth below the capsule, exact up to rim_mm: the liver in the box padded by rim_mm
        pbox = tuple(slice(max(b.start - q, 0), min(b.stop + q, n)) for b, q, n in zip(box, pad_rim, mask.shape))
        inner = tuple(slice(b.start - pb.start, b.stop - pb.start) for b, pb in zip(box, pbox))
        depth = edt_mm(liv[pbox], fsp)[inner]  # the array edge is not a capsule: no padding
        deep_frac = float((depth[m] > rim_mm).mean())
        tree: dict[str, float] | None = None
        if not is_tubular(component_shape(m, fsp), min_ratio=3.0, min_elongation=3.0):
            rejected["not_tubular"] += 1
        elif deep_frac < min_deep_fraction:
            # runs along the capsule: partial volume with fat, not a duct
            rejected["subcapsular"] = rejected.get("subcapsular", 0) + 1
        elif fat_fraction(vals_tree, noise_hu=grid.noise_hu) > max_fat_fraction:
            # fat in the fissures / porta hepatis that the liver mask took in
            rejected["fat"] = rejected.get("fat", 0) + 1
        elif contrast_phase and p - hu_tree < min_tree_contrast_hu:
            rejected["attenuation"] += 1
        else:
            tree = measure_duct_tree(m, fsp)
            if tree["diameter_mm"] < min_diameter_mm:
                rejected["calibre"] += 1
                tree = None
            elif tree["length_mm"] < min_length_mm:
                rejected["short"] += 1
                tree = None
        if tree is None:
            mask[box][m] = False
        else:
            measured[(tuple((b.start, b.stop) for b in box), int(m.sum()))] = tree
    # the reach is at least one and a half of the coarsest spacing (boundary uncertainty)
    absorbed = _lesions_in_ducts(
        mask, les, fsp, max_ratio=lesion_in_duct_ratio, reach_mm=max(lesion_in_duct_mm, 1.5 * max(fsp))
    )
    if absorbed:
        # a stretch of dilated duct that the lesion detector took for a small round lesion
        mask |= np.isin(les, absorbed)
    labels = duct_components(mask)
    comps: list[dict[str, float]] = []
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        m = labels[box] == k
        key = (tuple((b.start, b.stop) for b in box), int(m.sum()))
        tree = dict(measured[key]) if key in measured else measure_duct_tree(m, fsp)
        tree["label"] = float(k)
        tree["hu_mean"] = float(volume.array[box][m].astype(np.float32).mean())
        comps.append(tree)
    return DuctDetection(
        mask=mask,
        labels=labels,
        diameters_mm=[c["diameter_mm"] for c in comps],
        max_diameters_mm=[c["max_diameter_mm"] for c in comps],
        lengths_mm=[c["length_mm"] for c in comps],
        components=comps,
        rejected=rejected,
        lesions_in_duct=absorbed,
    )
