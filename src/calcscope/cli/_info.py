"""``calcscope info``: what a CT input holds (modality, grid, orientation, HU statistics)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import typer

from ._common import console, print_json

__all__ = ["register", "volume_info", "hu_statistics"]

#: percentiles reported by ``calcscope info``
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)

#: meta entries that are long lists; ``info`` reports their length only
_LONG_META = ("source_slices_before_resampling", "archive_members", "duplicates_dropped")


def hu_statistics(array: np.ndarray) -> dict[str, float]:
    """Minimum, maximum, mean and percentiles (nearest rank) of the voxel values.

    int16 arrays use an exact histogram (fast on large volumes); other dtypes
    ``numpy.percentile(..., method="inverted_cdf")``, which gives the same definition.
    """
    flat = array.ravel()
    out: dict[str, float] = {"min": float(flat.min()), "max": float(flat.max()), "mean": round(float(flat.mean(dtype=np.float64)), 3)}
    if array.dtype == np.int16:
        counts = np.bincount(flat.astype(np.int32) + 32768, minlength=65536)
        cdf = np.cumsum(counts)
        for q in PERCENTILES:
            rank = q / 100.0 * flat.size
            out[f"p{q}"] = float(int(np.searchsorted(cdf, rank, side="left")) - 32768)
    else:
        vals = np.percentile(flat, PERCENTILES, method="inverted_cdf")
        out.update({f"p{q}": float(v) for q, v in zip(PERCENTILES, vals)})
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def volume_info(volume: Any, *, path: str, series: str | None) -> dict[str, Any]:
    """The facts ``calcscope info`` prints, as a JSON-able dict."""
    meta = dict(volume.meta)
    for key in _LONG_META:
        if key in meta:
            meta[f"n_{key}"] = len(meta.pop(key))
    z, y, x = volume.shape
    return {
        "path": path,
        "source": volume.source,
        "format": meta.get("format"),
        "modality": volume.modality,
        "shape_zyx": [z, y, x],
        "size_xyz": [x, y, z],
        "slice_count": z,
        "spacing_zyx_mm": [round(s, 6) for s in volume.spacing_zyx],
        "origin_lps_mm": [round(o, 4) for o in volume.origin_lps],
        "orientation": volume.orientation_code(),
        "dtype": str(volume.array.dtype),
        "hu": hu_statistics(volume.array),
        "series_requested": series,
        "series_uid": volume.series_uid,
        "study_uid": volume.study_uid,
        "frame_of_reference_uid": volume.frame_of_reference_uid,
        "n_source_files": len(volume.source_files),
        "meta": _json_safe(meta),
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return " x ".join(_fmt(x) for x in v)
    return str(v)


def _print_human(info: dict[str, Any]) -> None:
    hu = info["hu"]
    meta = info["meta"]
    lines = [
        ("Source", f"{info['source']} ({info['format']})"),
        ("Modality", info["modality"]),
        ("Size (x, y, z)", _fmt(info["size_xyz"]) + f" voxels, {info['slice_count']} slices"),
        ("Spacing (z, y, x)", _fmt(info["spacing_zyx_mm"]) + " mm"),
        ("Orientation", f"{info['orientation']} (index axes i, j, k point to these LPS directions)"),
        ("Origin (LPS)", ", ".join(f"{o:g}" for o in info["origin_lps_mm"]) + " mm"),
        ("HU range", f"{hu['min']:g} to {hu['max']:g} (mean {hu['mean']:g})"),
        ("HU percentiles", ", ".join(f"p{q} {hu[f'p{q}']:g}" for q in PERCENTILES)),
    ]
    if info["series_uid"] or meta.get("format") == "DICOM":
        chosen = "chosen with --series" if info["series_requested"] else "the only candidate"
        lines.append(("Series", f"{info['series_uid'] or '(no SeriesInstanceUID)'} ({chosen})"))
        for key, label in (
            ("series_description", "Description"),
            ("manufacturer", "Manufacturer"),
            ("slice_thickness_mm", "Slice thickness (mm)"),
            ("contrast_agent", "Contrast agent tag"),
        ):
            if meta.get(key) is not None:
                lines.append((label, _fmt(meta[key])))
    pad = meta.get("padding")
    if pad:
        lines.append(("Padding", f"{pad['voxels']} voxels at {_fmt(pad['value_hu'])} HU ({pad['source']}) set to {pad['replaced_with_hu']} HU"))
    for step in meta.get("resampling") or []:
        lines.append(("Resampled", f"{step['reason']}: {step['method']}"))
    if meta.get("n_duplicates_dropped"):
        lines.append(("Duplicates", f"{meta['n_duplicates_dropped']} identical duplicate slice(s) dropped"))
    if meta.get("archive"):
        lines.append(("Archive", str(meta["archive"])))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        console.print(f"{k.ljust(width)} : {v}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    @app.command("info")
    def info_cmd(
        # str, not Path: click's Path type would pre-check readability and answer with a usage
        # error (exit 2) instead of calcscope's own InputNotFoundError paragraph (exit 3)
        path: str = typer.Argument(..., help="CT: NIfTI/NRRD/MHA file, DICOM folder, or zip of either."),
        series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID when the folder holds several series."),
        allow_modality: bool = typer.Option(False, "--allow-modality", help="Accept non-CT images (values are not HU)."),
        as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    ) -> None:
        """Show modality, size, spacing, orientation, HU range and the series chosen."""
        from ..io import load_ct

        volume = load_ct(path, series=series, allow_modality=allow_modality)
        info = volume_info(volume, path=path, series=series)
        if as_json:
            print_json(info)
        else:
            _print_human(info)
