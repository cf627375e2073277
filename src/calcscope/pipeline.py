"""The end-to-end pipeline: load -> liver -> calcifications -> lesions/ducts -> describe -> reason.

:func:`analyze` is the Python API behind ``calcscope analyze``; the CLI, the demo and the
follow-up comparison are thin shells over it. Each stage is timed and recorded in the
analysis' provenance; a failure inside a stage is reported as a
:class:`~calcscope.errors.PipelineError` naming the stage, while errors caused by the
user's input keep their own class and exit code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import CalcscopeError, PipelineError
from .model import (
    LABEL_DUCT,
    LABEL_LIVER,
    Analysis,
    Context,
    InputInfo,
    Masks,
    Phase,
    PhaseEstimate,
    Volume,
)

__all__ = ["AnalysisRun", "analyze", "analyze_volume", "STAGES", "input_sha256"]

#: pipeline stages in order, as named in timings, progress and error messages
STAGES = ("load", "liver", "calcifications", "lesions", "describe", "reason")

ProgressCallback = Callable[[str, str], None]  # (stage, "start" | "done")


@dataclass(eq=False)
class AnalysisRun:
    """Result of one pipeline run: the JSON-able analysis plus the arrays behind it."""

    analysis: Analysis
    volume: Volume
    masks: Masks = field(default_factory=Masks)
    #: per-stage wall seconds of this run (also in ``analysis.timings_s`` unless timestamp=False)
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class _Timer:
    timings: dict[str, float] = field(default_factory=dict)
    progress: ProgressCallback | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress:
            self.progress(name, "start")
        t0 = time.perf_counter()
        try:
            yield
        except CalcscopeError:
            raise
        except MemoryError as exc:
            raise PipelineError(
                f"the '{name}' stage ran out of memory",
                hint="analyse a smaller field of view or run on a machine with more memory",
            ) from exc
        except Exception as exc:  # a bug or an unforeseen input: say where it happened
            raise PipelineError(
                f"the '{name}' stage failed ({type(exc).__name__}: {exc})",
                hint="re-run with --debug for the traceback and report it; no output was written",
            ) from exc
        self.timings[name] = round(time.perf_counter() - t0, 3)
        if self.progress:
            self.progress(name, "done")


def input_sha256(path: str | os.PathLike, volume: Volume | None = None) -> str:
    """SHA-256 of the input: the file's bytes, or for a folder/series the sorted slice files' bytes."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_file():
        files = [p]
    elif volume is not None and volume.source_files:
        files = sorted(Path(f) for f in volume.source_files)
    else:
        files = sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        if len(files) > 1:
            h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _coerce_context(context: Context | dict | str | os.PathLike | None) -> Context | None:
    if context is None or isinstance(context, Context):
        return context
    if isinstance(context, dict):
        from pydantic import ValidationError

        from .errors import ContextError

        try:
            return Context.model_validate(context)
        except ValidationError as exc:
            first = exc.errors()[0]
            field_name = ".".join(str(x) for x in first["loc"])
            raise ContextError(f"clinical context field '{field_name}': {first['msg']}") from exc
    from .reason import load_context

    return load_context(context)


def _label_table(analysis: Analysis, masks: Masks) -> dict[str, str]:
    """Label id -> name of segmentation.nii.gz, as the report layer names them."""
    from .report import label_table

    table = label_table(analysis)
    if masks.ducts is None or not masks.ducts.any():
        table.pop(str(LABEL_DUCT), None)
    if masks.liver is None:
        table.pop(str(LABEL_LIVER), None)
    return table


def analyze_volume(
    volume: Volume,
    *,
    input_path: str | os.PathLike | None = None,
    input_hash: str | None = None,
    context: Context | dict | str | os.PathLike | None = None,
    liver_mask: str | os.PathLike | np.ndarray | None = None,
    liver_label: int | None = None,
    phase: Phase | str | None = None,
    segmenter: str = "auto",
    capsular_margin_mm: float = 3.0,
    timestamp: bool = True,
    progress: ProgressCallback | None = None,
    _timer: _Timer | None = None,
) -> AnalysisRun:
    """Run every stage after loading on an in-memory CT volume.

    Parameters
    ----------
    volume: Volume
        CT in Hounsfield units.
    input_path, input_hash: optional
        Recorded in ``analysis.input`` for provenance.
    context: Context, dict, path or None
        Clinical context (YAML/JSON file, dict or model).
    liver_mask: path or (Z, Y, X) bool ndarray, optional
        A user liver mask (binary or label map; TotalSegmentator outputs recognised).
    liver_label: int, optional
        Label value of the liver in ``liver_mask`` when it is a label map.
    phase: Phase or str, optional
        Contrast phase; estimated from the image when omitted.
    segmenter: {"auto", "totalsegmentator"}
        Liver segmentation backend when no mask is given.
    capsular_margin_mm: float
        Thickness of the shell outside the liver searched for capsular calcification.
    timestamp: bool
        Record the run-dependent fields: ``analysis.created`` (ISO time) and
        ``analysis.timings_s`` (per-stage seconds). Without them two runs on the same
        input give byte-identical ``analysis.json``.
    progress: callable, optional
        Called as ``progress(stage, "start"|"done")``.

    Returns
    -------
    AnalysisRun
    """
    from .describe import (
        associate,
        calcification_pattern,
        describe_calcifications,
        describe_ducts,
        describe_lesions,
    )
    from .detect import find_calcifications, find_lesions_and_ducts
    from .reason import reason
    from .segment import automatic_mask_warnings, estimate_phase, segment_liver

    timer = _timer or _Timer(progress=progress)
    ctx = _coerce_context(context)
    provenance: list[dict[str, Any]] = []
    warnings: list[str] = list(volume.meta.get("warnings", []))

    with timer.stage("liver"):
        seg = segment_liver(
            volume,
            method=segmenter,
            user_mask=liver_mask,
            user_label=liver_label,
            capsular_margin_mm=capsular_margin_mm,
        )
        if phase is not None:
            ph = Phase(phase)
            auto = estimate_phase(volume, seg.mask)
            phase_est = PhaseEstimate(
                phase=ph,
                source="user",
                aorta_hu=auto.aorta_hu,
                portal_vein_hu=auto.portal_vein_hu,
                liver_hu=auto.liver_hu,
                spleen_hu=auto.spleen_hu,
                reason=f"set by the user; the image alone suggested {auto.phase.value} ({auto.reason})",
            )
        else:
            phase_est = estimate_phase(volume, seg.mask)
            if phase_est.phase == Phase.UNKNOWN:
                # the calcification threshold then takes the arterial (safe) side, but a bright
                # artery can still pass as calcium: the reader should know
                warnings.append(
                    f"The contrast phase could not be estimated ({phase_est.reason}). Calcifications "
                    "were searched with the arterial-phase threshold; enhanced vessels may be among "
                    "them. Give the phase (--phase) if it is known."
                )
        warnings.extend(automatic_mask_warnings(seg.summary.method, phase_est))
        provenance.append({"stage": "liver", "method": seg.summary.method, "capsular_margin_mm": capsular_margin_mm})
    masks = Masks(liver=seg.mask, liver_margin=seg.margin, lobes=seg.lobes)

    with timer.stage("calcifications"):
        calc = find_calcifications(volume, seg.mask, phase=phase_est.phase, margin=seg.margin)
        masks.calcifications = calc.labels
        masks.vessels = calc.vessels
        provenance.append(
            {"stage": "calcifications", "threshold_hu": round(float(calc.threshold_hu), 1), "rejected": dict(calc.rejected)}
        )

    with timer.stage("lesions"):
        les, duct = find_lesions_and_ducts(
            volume, seg.mask, phase=phase_est.phase, calcifications=calc.labels, vessels=calc.vessels
        )
        masks.lesions = les.labels
        masks.ducts = duct.mask
        provenance.append(
            {
                "stage": "lesions",
                "parenchyma_hu": round(float(les.parenchyma_hu), 1),
                "noise_hu": round(float(les.noise_hu), 1),
                "lesions_merged_into_ducts": len(duct.lesions_in_duct),
            }
        )

    with timer.stage("describe"):
        calcs = describe_calcifications(volume, calc.labels, liver=seg.mask, lobes=seg.lobes, margin=seg.margin)
        lesions = describe_lesions(
            volume,
            les.labels,
            liver=seg.mask,
            lobes=seg.lobes,
            parenchyma_hu=les.parenchyma_hu,
            noise_hu=les.noise_hu,
            phase=phase_est.phase,
            blood_pool_hu=phase_est.aorta_hu,
            inner=les.inner,
        )
        ducts = describe_ducts(volume, duct.mask, liver=seg.mask, lobes=seg.lobes)
        associate(
            calcs, lesions, ducts, volume=volume, calc_labels=calc.labels, lesion_labels=les.labels, duct_mask=duct.mask
        )
        pattern = calcification_pattern(calcs, liver_volume_ml=seg.summary.volume_ml)
        findings = [*lesions, *ducts, *calcs]

    analysis = Analysis(
        software={"name": "calcscope", "version": __version__},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds") if timestamp else None,
        input=InputInfo(
            path=str(input_path) if input_path is not None else volume.source,
            sha256=input_hash or hashlib.sha256(np.ascontiguousarray(volume.array).tobytes()).hexdigest(),
            modality=volume.modality,
            shape_zyx=volume.shape,
            spacing_zyx_mm=tuple(round(s, 6) for s in volume.spacing_zyx),
            origin_lps_mm=tuple(round(o, 6) for o in volume.origin_lps),
            orientation=volume.orientation_code(),
            series_uid=volume.series_uid,
            description=volume.source,
        ),
        context=ctx,
        phase=phase_est,
        liver=seg.summary,
        findings=findings,
        calcification_pattern=pattern,
        warnings=warnings,
    )
    analysis.labels = _label_table(analysis, masks)

    with timer.stage("reason"):
        analysis.differential = reason(analysis.findings_document(), ctx, pattern=pattern)

    run_timings = dict(timer.timings)
    analysis.timings_s = run_timings if timestamp else {}
    analysis.provenance = [*volume.meta.get("provenance", []), *provenance]
    return AnalysisRun(analysis=analysis, volume=volume, masks=masks, timings_s=run_timings)


def analyze(
    input_path: str | os.PathLike,
    *,
    series: str | None = None,
    allow_modality: bool = False,
    **kwargs: Any,
) -> AnalysisRun:
    """Load a CT (file, DICOM folder or zip) and run the whole pipeline on it.

    Parameters
    ----------
    input_path: str or PathLike
        NIfTI/NRRD/MHA file, DICOM folder, or zip of either.
    series: str, optional
        SeriesInstanceUID when the folder holds several CT series.
    allow_modality: bool
        Accept non-CT input (values are then not HU; results are unreliable).
    **kwargs
        Passed to :func:`analyze_volume` (context, liver_mask, liver_label, phase,
        segmenter, capsular_margin_mm, timestamp, progress).

    Returns
    -------
    AnalysisRun
        ``.analysis`` (the JSON-able result), ``.volume`` and ``.masks``.

    Examples
    --------
    >>> run = calcscope.analyze("ct.nii.gz", context="context.yaml")  # doctest: +SKIP
    >>> run.analysis.differential.ranked[0].name  # doctest: +SKIP
    """
    from .io import load_ct

    timer = _Timer(progress=kwargs.pop("progress", None))
    with timer.stage("load"):
        volume = load_ct(input_path, series=series, allow_modality=allow_modality)
        digest = input_sha256(input_path, volume)
    return analyze_volume(volume, input_path=input_path, input_hash=digest, _timer=timer, **kwargs)
