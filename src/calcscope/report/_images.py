"""Key images of the HTML report, drawn with matplotlib's Agg backend into PNG bytes.

* :func:`finding_image`: an axial slice through one finding (the slice where its
  mask is largest), cropped around it, with the mask's contour, a scale bar in mm
  and the patient-orientation letters. Lesions and ducts use a soft-tissue window
  (W 400 / L 40 HU), calcifications a bone-like window (W 1000 / L 250 HU).
* :func:`liver_mip_image`: maximum-intensity projections (coronal and axial) of the
  liver region with every calcification circled and numbered.

Images are shown in the radiological convention whatever the voxel order on disk:
each block is first transposed/flipped so that its axes run towards patient
superior, posterior and left (by the dominant direction cosine of each index axis),
then the axial plane is drawn with anterior up and the patient's right on the
viewer's left; the coronal plane with superior up. PNG files carry no timestamp and
no software tag, and the figure size and DPI are fixed, so the bytes are
reproducible.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..model import CALC_LABEL_BASE, LABEL_DUCT, LESION_LABEL_BASE, Finding, Masks, Volume

__all__ = [
    "SOFT_TISSUE_WINDOW_HU",
    "CALCIFICATION_WINDOW_HU",
    "MIP_WINDOW_HU",
    "Orienter",
    "finding_image",
    "liver_mip_image",
    "png_bytes",
]

#: (lower, upper) display limits in HU: W 400 / L 40
SOFT_TISSUE_WINDOW_HU = (-160.0, 240.0)
#: W 1000 / L 250
CALCIFICATION_WINDOW_HU = (-250.0, 750.0)
#: W 800 / L 250 for the liver MIP
MIP_WINDOW_HU = (-150.0, 650.0)

_DPI = 100
_NICE_MM = (1, 2, 5, 10, 20, 50, 100, 200)


@dataclass(frozen=True)
class Orienter:
    """Transpose/flip that brings a (z, y, x) array into (S, P, L) order.

    ``perm[o]`` is the array axis that becomes output axis ``o`` (0 = towards
    superior, 1 = towards posterior, 2 = towards patient left), ``flip[o]`` says
    whether that axis runs the other way and is reversed.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def from_volume(cls, volume: Volume) -> "Orienter":
        d = volume.direction_matrix
        # array axis a (0 = k/z, 1 = j/y, 2 = i/x) is direction column 2 - a
        lps_axis = []
        sign = []
        for a in range(3):
            v = d[:, 2 - a]
            ax = int(np.argmax(np.abs(v)))
            lps_axis.append(ax)
            sign.append(v[ax] >= 0)
        if sorted(lps_axis) != [0, 1, 2]:  # degenerate oblique: keep the array order
            return cls((0, 1, 2), (False, False, False))
        perm = tuple(lps_axis.index(2 - o) for o in range(3))
        flip = tuple(not sign[perm[o]] for o in range(3))
        return cls(perm, flip)  # type: ignore[arg-type]

    def apply(self, block: np.ndarray) -> np.ndarray:
        out = np.transpose(block, self.perm)
        axes = tuple(o for o in range(3) if self.flip[o])
        return np.flip(out, axes) if axes else out

    def spacing(self, spacing_zyx: tuple[float, float, float]) -> tuple[float, float, float]:
        return tuple(float(spacing_zyx[p]) for p in self.perm)  # type: ignore[return-value]

    def point(self, idx_zyx: np.ndarray, shape_zyx: tuple[int, ...]) -> np.ndarray:
        """Map a (z, y, x) index inside a block of ``shape_zyx`` to the oriented block."""
        out = np.empty(3)
        for o in range(3):
            p = self.perm[o]
            out[o] = (shape_zyx[p] - 1 - idx_zyx[p]) if self.flip[o] else idx_zyx[p]
        return out


def png_bytes(fig) -> bytes:
    """Render a matplotlib Figure to PNG bytes without metadata (reproducible)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None}, facecolor=fig.get_facecolor())
    return buf.getvalue()


def _new_figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=_DPI, facecolor="black")


def _outlined(text_artist) -> None:
    from matplotlib import patheffects

    text_artist.set_path_effects([patheffects.withStroke(linewidth=2.5, foreground="black")])


def _scale_bar(ax, width_mm: float, height_mm: float) -> None:
    target = width_mm / 4.0
    length = min(_NICE_MM, key=lambda n: abs(n - target))
    x1 = width_mm * 0.95
    x0 = x1 - length
    y = height_mm * 0.93
    ax.plot([x0, x1], [y, y], color="white", linewidth=3, solid_capstyle="butt")
    t = ax.text((x0 + x1) / 2, y - height_mm * 0.03, f"{length:g} mm", color="white", fontsize=8,
                ha="center", va="bottom")
    _outlined(t)


def _orientation_letters(ax, width_mm: float, height_mm: float, *, top: str, bottom: str) -> None:
    spec = (
        (width_mm / 2, height_mm * 0.02, top, "center", "top"),
        (width_mm / 2, height_mm * 0.98, bottom, "center", "bottom"),
        (width_mm * 0.02, height_mm / 2, "R", "left", "center"),
        (width_mm * 0.98, height_mm / 2, "L", "right", "center"),
    )
    for x, y, letter, ha, va in spec:
        t = ax.text(x, y, letter, color="#7fdbff", fontsize=10, fontweight="bold", ha=ha, va=va)
        _outlined(t)


def _finding_block_mask(finding: Finding, masks: Masks, sl: tuple[slice, slice, slice]) -> np.ndarray | None:
    lab = finding.label
    if lab is None:
        return None
    if lab > CALC_LABEL_BASE and masks.calcifications is not None:
        return masks.calcifications[sl] == (lab - CALC_LABEL_BASE)
    if LESION_LABEL_BASE < lab < CALC_LABEL_BASE and masks.lesions is not None:
        return masks.lesions[sl] == (lab - LESION_LABEL_BASE)
    if lab == LABEL_DUCT and masks.ducts is not None:
        return masks.ducts[sl].astype(bool)
    return None


def _finding_extent_mm(finding: Finding) -> float:
    for v in (finding.longest_diameter_mm, finding.size_mm):
        if v:
            return float(v)
    return 10.0


def finding_image(
    volume: Volume,
    masks: Masks,
    finding: Finding,
    *,
    orienter: Orienter | None = None,
    size_in: float = 3.2,
) -> bytes | None:
    """PNG of an axial slice through ``finding`` with its contour; None without a position.

    Parameters
    ----------
    volume, masks:
        The analysed volume and its masks (same grid).
    finding:
        An image-derived finding (``centroid_voxel`` set).
    orienter:
        Precomputed :class:`Orienter` of ``volume`` (computed when omitted).
    size_in:
        Width and height of the image in inches (at 100 DPI).
    """
    if finding.centroid_voxel is None:
        return None
    orienter = orienter or Orienter.from_volume(volume)
    centre = np.asarray(finding.centroid_voxel, dtype=float)
    half_mm = max(20.0, 0.75 * _finding_extent_mm(finding) + 10.0)
    sl = []
    for a in range(3):
        half_vox = int(np.ceil(half_mm / volume.spacing_zyx[a]))
        c = int(round(float(np.clip(centre[a], 0, volume.shape[a] - 1))))
        sl.append(slice(max(0, c - half_vox), min(volume.shape[a], c + half_vox + 1)))
    sl_t = (sl[0], sl[1], sl[2])
    block_shape = tuple(s.stop - s.start for s in sl_t)
    hu = orienter.apply(volume.array[sl_t]).astype(np.float32)
    mask = _finding_block_mask(finding, masks, sl_t)
    mask_o = orienter.apply(mask) if mask is not None else None
    local_centre = orienter.point(centre - np.array([s.start for s in sl_t]), block_shape)
    if mask_o is not None and mask_o.any():
        areas = mask_o.sum(axis=(1, 2))
        k = int(np.argmax(areas))
    else:
        k = int(round(float(np.clip(local_centre[0], 0, hu.shape[0] - 1))))
    sz, sy, sx = orienter.spacing(volume.spacing_zyx)
    img = hu[k]
    h, w = img.shape
    width_mm, height_mm = w * sx, h * sy
    window = CALCIFICATION_WINDOW_HU if finding.kind == "calcification" else SOFT_TISSUE_WINDOW_HU
    aspect = height_mm / width_mm if width_mm > 0 else 1.0
    fig = _new_figure(size_in, size_in * min(max(aspect, 0.5), 2.0))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], extent=(0, width_mm, height_mm, 0),
              interpolation="nearest")
    colour = "#ffd700" if finding.kind == "calcification" else "#ff4136"
    if mask_o is not None and mask_o[k].any():
        xs = (np.arange(w) + 0.5) * sx
        ys = (np.arange(h) + 0.5) * sy
        padded = np.pad(mask_o[k].astype(float), 1)
        xs_p = np.concatenate([[xs[0] - sx], xs, [xs[-1] + sx]])
        ys_p = np.concatenate([[ys[0] - sy], ys, [ys[-1] + sy]])
        ax.contour(xs_p, ys_p, padded, levels=[0.5], colors=[colour], linewidths=1.2)
    else:
        from matplotlib.patches import Circle

        r = max(_finding_extent_mm(finding) / 2.0, 2.0) + 2.0
        cy, cx = (local_centre[1] + 0.5) * sy, (local_centre[2] + 0.5) * sx
        ax.add_patch(Circle((cx, cy), r, fill=False, edgecolor=colour, linewidth=1.2))
    ax.set_xlim(0, width_mm)
    ax.set_ylim(height_mm, 0)
    ax.set_axis_off()
    _scale_bar(ax, width_mm, height_mm)
    _orientation_letters(ax, width_mm, height_mm, top="A", bottom="P")
    t = ax.text(width_mm * 0.03, height_mm * 0.10, finding.id or finding.kind, color="white", fontsize=9,
                ha="left", va="top")
    _outlined(t)
    return png_bytes(fig)


def liver_mip_image(
    volume: Volume,
    masks: Masks,
    calcifications: list[Finding],
    *,
    orienter: Orienter | None = None,
    margin_mm: float = 10.0,
    height_in: float = 3.6,
) -> bytes | None:
    """PNG with coronal and axial MIPs of the liver region, calcifications circled and numbered.

    Voxels outside the liver and the calcification masks (capsular ones included)
    are set to -1000 HU before projecting, so ribs, the spine and enhanced vessels
    next to the liver do not hide hepatic calcifications. Returns None when there is no liver mask or it is empty.
    """
    if masks.liver is None or not masks.liver.any():
        return None
    orienter = orienter or Orienter.from_volume(volume)
    # the capsular margin is left out on purpose: it touches ribs and vessels, which
    # would dominate the projection; capsular calcifications come in with their masks
    region = masks.liver.astype(bool, copy=True)
    if masks.calcifications is not None:
        region |= masks.calcifications > 0
    zz = np.nonzero(region.any(axis=(1, 2)))[0]
    yy = np.nonzero(region.any(axis=(0, 2)))[0]
    xx = np.nonzero(region.any(axis=(0, 1)))[0]
    sl = []
    for a, idx in enumerate((zz, yy, xx)):
        pad = int(np.ceil(margin_mm / volume.spacing_zyx[a]))
        sl.append(slice(max(0, int(idx[0]) - pad), min(volume.shape[a], int(idx[-1]) + pad + 1)))
    sl_t = (sl[0], sl[1], sl[2])
    block_shape = tuple(s.stop - s.start for s in sl_t)
    hu = np.where(region[sl_t], volume.array[sl_t], -1000).astype(np.float32)
    hu = orienter.apply(hu)
    liver_o = orienter.apply(masks.liver[sl_t].astype(bool))
    sz, sy, sx = orienter.spacing(volume.spacing_zyx)
    nz, ny, nx = hu.shape
    coronal = hu.max(axis=1)[::-1]  # rows: superior at the top
    axial = hu.max(axis=0)  # rows: anterior at the top
    cor_liver = liver_o.any(axis=1)[::-1]
    ax_liver = liver_o.any(axis=0)
    w_mm, hc_mm, ha_mm = nx * sx, nz * sz, ny * sy
    # each panel as wide as its aspect ratio allows at the common height; no letterboxing
    widths = np.array([w_mm / hc_mm, w_mm / ha_mm]) * height_in
    widths = np.clip(widths, 0.6, 4.0 * height_in)
    total = float(widths.sum())
    fig = _new_figure(total, height_in)
    f0 = float(widths[0] / total)
    axes = (fig.add_axes((0, 0, f0, 1)), fig.add_axes((f0, 0, 1 - f0, 1)))
    pts = []
    for f in calcifications:
        if f.centroid_voxel is None:
            continue
        local = np.asarray(f.centroid_voxel, dtype=float) - np.array([s.start for s in sl_t])
        p = orienter.point(local, block_shape)
        num = (f.label - CALC_LABEL_BASE) if f.label and f.label > CALC_LABEL_BASE else None
        pts.append((p, num, f))
    from matplotlib.patches import Circle

    views = (
        (axes[0], coronal, cor_liver, hc_mm, "coronal MIP", "S", "I",
         lambda p: ((p[2] + 0.5) * sx, (nz - 1 - p[0] + 0.5) * sz)),
        (axes[1], axial, ax_liver, ha_mm, "axial MIP", "A", "P",
         lambda p: ((p[2] + 0.5) * sx, (p[1] + 0.5) * sy)),
    )
    for ax, img, outline, h_mm, title, top, bottom, to_xy in views:
        ax.imshow(img, cmap="gray", vmin=MIP_WINDOW_HU[0], vmax=MIP_WINDOW_HU[1], extent=(0, w_mm, h_mm, 0),
                  interpolation="nearest")
        rows, cols = outline.shape
        xs = (np.arange(cols) + 0.5) * w_mm / cols
        ys = (np.arange(rows) + 0.5) * h_mm / rows
        if outline.any() and rows > 1 and cols > 1:
            ax.contour(xs, ys, outline.astype(float), levels=[0.5], colors=["#dd8265"], linewidths=0.8)
        for p, num, f in pts:
            x, y = to_xy(p)
            r = max((f.longest_diameter_mm or f.size_mm or 3.0) / 2.0, 1.5) + 3.0
            ax.add_patch(Circle((x, y), r, fill=False, edgecolor="#ffd700", linewidth=1.0))
            if num is not None and len(pts) <= 40:
                t = ax.text(x + r, y - r, str(num), color="#ffd700", fontsize=7, ha="left", va="bottom")
                _outlined(t)
        ax.set_xlim(0, w_mm)
        ax.set_ylim(h_mm, 0)
        ax.set_axis_off()
        _scale_bar(ax, w_mm, h_mm)
        _orientation_letters(ax, w_mm, h_mm, top=top, bottom=bottom)
        t = ax.text(w_mm * 0.03, h_mm * 0.08, title, color="white", fontsize=9, ha="left", va="top")
        _outlined(t)
    return png_bytes(fig)
