"""``calcscope synth``: write a synthetic abdominal CT phantom with its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import OutputError, UsageError
from ._common import console

__all__ = ["register", "run_synth"]


def _is_nifti(p: Path) -> bool:
    n = p.name.lower()
    return n.endswith(".nii.gz") or n.endswith(".nii")


def run_synth(
    *,
    preset: str,
    seed: int,
    out: Path,
    truth: Path | None = None,
    shape_zyx: tuple[int, int, int] | None = None,
    spacing_zyx: tuple[float, float, float] | None = None,
    phase: str | None = None,
    noise_hu: float = 12.0,
    streaks: bool = False,
    dicom: bool = False,
    force: bool = False,
    realism: bool = False,
    thickness_mm: float | None = None,
) -> dict[str, Path]:
    """Generate a preset and write it; returns the written paths by name.

    ``out`` ending in ``.nii``/``.nii.gz`` receives the CT (label maps and truth beside it,
    and with ``dicom`` also a series in ``<stem>_dicom/``); any other ``out`` is a folder
    receiving ``ct.nii.gz`` (or, with ``dicom``, a series in ``dicom/``), the label maps
    ``objects/organs/lobes/vessels.nii.gz`` and ``truth.json``. ``realism`` turns on
    :class:`calcscope.synth.Realism` (``thickness_mm``: its slice thickness).
    """
    from ..synth import PHASES, PRESETS, Realism, generate_phantom, write_phantom
    from ..synth._dicom import write_dicom_series

    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}", hint=f"choose one of: {', '.join(PRESETS)}")
    if phase is not None and phase not in PHASES:
        raise UsageError(f"unknown phase {phase!r}", hint=f"choose one of: {', '.join(PHASES)}")
    nifti = _is_nifti(out)
    if out.exists() and not force:
        if nifti or (out.is_dir() and any(out.iterdir())) or out.is_file():
            raise OutputError("the output already exists", path=str(out), hint="choose another --out or add --force")
    if thickness_mm is not None and not realism:
        raise UsageError("--thickness needs --realism", hint="add --realism")
    kwargs: dict = {"seed": seed, "phase": phase, "noise_hu": noise_hu, "streaks": streaks,
                    "realism": Realism(slice_thickness_mm=thickness_mm) if realism else None}
    if shape_zyx:
        kwargs["shape_zyx"] = tuple(int(v) for v in shape_zyx)
    if spacing_zyx:
        kwargs["spacing_zyx"] = tuple(float(v) for v in spacing_zyx)
    try:
        ph = generate_phantom(preset, **kwargs)
    except ValueError as exc:
        raise UsageError(f"cannot generate the phantom: {exc}", hint="check --shape, --spacing, --phase and --noise-hu") from exc
    paths = write_phantom(ph, out, truth=truth)
    key = f"{preset}-seed{seed}-{ph.truth.phase}-{'x'.join(map(str, ph.truth.shape_zyx))}-{'x'.join(f'{v:g}' for v in ph.truth.spacing_zyx)}"
    if dicom:
        if nifti:
            stem = out.name[: -len(".nii.gz")] if out.name.lower().endswith(".nii.gz") else out.name[: -len(".nii")]
            ddir = out.parent / f"{stem}_dicom"
        else:
            ddir = out / "dicom"
            paths.pop("ct").unlink()
        if ddir.exists() and any(ddir.iterdir()):
            if not force:
                raise OutputError("the DICOM output folder already exists", path=str(ddir), hint="add --force")
            for f in ddir.glob("IM*.dcm"):
                f.unlink()
        write_dicom_series(ph.volume, ddir, key=key, phase=ph.truth.phase, description=f"calcscope phantom {preset} seed {seed}")
        paths["dicom"] = ddir
    return paths


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth_cmd(
        preset: str = typer.Option("normal", "--preset", help="normal, calcified_metastases, isolated_calcification, duct_stones, hydatid_cyst, "
                                   "schistosomiasis, tuberculosis, healed_abscess, hemangioma, fibrolamellar, simple_cyst."),
        seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same bytes."),
        out: Path = typer.Option(..., "--out", "-o", help="case.nii.gz (label maps and truth beside it) or a folder."),
        truth: Optional[Path] = typer.Option(None, "--truth", help="Where to write the truth JSON (default beside the CT)."),
        shape: Optional[tuple[int, int, int]] = typer.Option(None, "--shape", help="Grid size Z Y X in voxels (default 80 160 160)."),
        spacing: Optional[tuple[float, float, float]] = typer.Option(None, "--spacing", help="Voxel spacing Z Y X in mm (default 2.5 1.5 1.5)."),
        phase: Optional[str] = typer.Option(None, "--phase", help="non_contrast, arterial, portal_venous or delayed (default: the preset's)."),
        noise_hu: float = typer.Option(12.0, "--noise-hu", help="Noise standard deviation, HU."),
        streaks: bool = typer.Option(False, "--streaks", help="Add mild streaks through dense calcifications."),
        dicom: bool = typer.Option(False, "--dicom", help="Also (folder --out: instead of ct.nii.gz) write a DICOM CT series."),
        force: bool = typer.Option(False, "--force", help="Overwrite existing outputs."),
        realism: bool = typer.Option(False, "--realism", help="Parenchymal texture, through-slice noise correlation, hepatic arteries, bowel loops."),
        thickness: Optional[float] = typer.Option(None, "--thickness", help="Slice thickness in mm, may exceed the spacing (with --realism)."),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Generate a synthetic abdominal CT with known liver findings and its truth file."""
        paths = run_synth(preset=preset, seed=seed, out=out, truth=truth, shape_zyx=shape, spacing_zyx=spacing, phase=phase,
                          noise_hu=noise_hu, streaks=streaks, dicom=dicom, force=force,
                          realism=realism, thickness_mm=thickness)
        if not quiet:
            from ..synth import Truth

            t = Truth.load(paths["truth"])
            console.print(f"[bold]{t.preset}[/] seed {t.seed}, {t.phase}, grid {t.shape_zyx} at {t.spacing_zyx} mm, "
                          f"{len(t.objects)} object(s), distribution {t.calcification_distribution or 'none'}", highlight=False)
            for o in t.objects:
                rel = f" {o.relation} of {o.parent}" if o.parent else ""
                console.print(f"  {o.id:18s} {o.type:13s} {o.subtype:13s} {o.size_mm:6.1f} mm {o.lobe or '':5s} {o.depth or '':11s}{rel}", highlight=False)
            for k, p in paths.items():
                console.print(f"  {k}: {p}", highlight=False)
