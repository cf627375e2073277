"""Registration of the current study to the prior within the liver (SimpleITK).

The prior is the *fixed* image and the current the *moving* one, so the
resulting transform maps prior (LPS mm) points to current points, the ITK
convention; :meth:`Registration.current_to_prior` inverts it (exactly for the
affine part, by fixed-point iteration when a B-spline is added).

Procedure
---------
1. Both studies are cropped to the bounding box of their liver mask widened by
   ``margin_mm`` (twice that for the current study, to leave room for motion),
   smoothed (Gaussian, per axis sigma = half of working minus native spacing) and
   resampled to an isotropic ``working_spacing_mm`` grid.
2. The images registered are the CTs windowed to [-150, 400] HU when both CTs
   are available (metric: Mattes mutual information, 50 bins); otherwise the
   signed distance maps of the two liver masks, clipped to +-40 mm (metric:
   mean squares). The metric is evaluated inside the prior liver mask dilated by
   ``margin_mm``.
3. Rigid (Euler 3-D) initialised by the centres of mass (moments) of the liver
   masks (shrink 4/2/1, smoothing 2/1/0 voxels of the working grid), then affine
   (shrink 2/1, smoothing 1/0), with a regular-step gradient descent; optionally
   a B-spline (control points every ``bspline_grid_mm``) optimised with L-BFGS-B
   at full working resolution.
4. Metric sampling is random with a fixed ``seed`` on a fraction of the voxels
   (at most ``sampling_percentage``, and about ``max_samples`` mask voxels per
   level), and the metric runs on one thread by default, so the same inputs give
   bit-identical transforms.

Quality figures: the final metric value, the Dice coefficient of the prior
liver mask against the current one warped into the prior frame (before and
after registration), and the landmark error when corresponding points are given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import MaskError
from ..model import Volume

__all__ = ["Registration", "register_liver", "ct_window_hu"]

ct_window_hu = (-150.0, 400.0)
_DIST_CLIP_MM = 40.0


@dataclass(eq=False)
class Registration:
    """Result of :func:`register_liver`.

    Attributes
    ----------
    transform: SimpleITK.Transform
        Maps prior LPS points (mm) to current LPS points.
    image_kind: {"ct", "liver_distance_map"}
    metric: str
    final_metric: float
        Metric value at the end of the last stage (lower is better for both metrics).
    liver_dice_before, liver_dice_after: float
        Dice of the liver masks on the working grid, identity vs. registered.
    stages: list of dict
        Per stage: name, iterations, metric value, stop condition.
    landmark_errors_mm: ndarray or None
        ``|T(prior landmark) - current landmark|`` per landmark when given.
    working_spacing_mm: float
    elapsed_s: float
    """

    transform: Any
    image_kind: str
    metric: str
    final_metric: float
    liver_dice_before: float
    liver_dice_after: float
    stages: list[dict[str, Any]] = field(default_factory=list)
    landmark_errors_mm: np.ndarray | None = None
    working_spacing_mm: float = 2.0
    deformable: bool = False
    elapsed_s: float = 0.0
    _affine: Any = None
    _affine_inverse: Any = None

    # ---- point mapping -------------------------------------------------------------
    def prior_to_current(self, points_mm: Any) -> np.ndarray:
        """Map (N, 3) or (3,) prior LPS points to the current frame."""
        pts = np.atleast_2d(np.asarray(points_mm, dtype=float))
        out = np.array([self.transform.TransformPoint(tuple(map(float, p))) for p in pts])
        return out.reshape(np.shape(points_mm)) if np.ndim(points_mm) == 1 else out

    def current_to_prior(self, points_mm: Any, *, tol_mm: float = 1e-3, max_iter: int = 50) -> np.ndarray:
        """Map (N, 3) or (3,) current LPS points into the prior frame.

        Exact inverse of the affine stage; with a B-spline, the fixed-point iteration
        ``p <- p + A^-1 (q - T(p))`` (A: linear part of the affine stage) refines it to
        ``tol_mm``.
        """
        q = np.atleast_2d(np.asarray(points_mm, dtype=float))
        inv = self._affine_inverse
        p = np.array([inv.TransformPoint(tuple(map(float, x))) for x in q])
        if self.deformable:
            a_inv = np.linalg.inv(np.asarray(self._affine.GetMatrix(), dtype=float).reshape(3, 3))
            for _ in range(max_iter):
                resid = q - self.prior_to_current(p)
                p = p + resid @ a_inv.T
                if np.max(np.linalg.norm(resid, axis=1)) < tol_mm:
                    break
        return p.reshape(np.shape(points_mm)) if np.ndim(points_mm) == 1 else p

    def affine_matrix(self) -> np.ndarray:
        """4x4 homogeneous matrix of the affine stage (prior LPS -> current LPS)."""
        a = np.asarray(self._affine.GetMatrix(), dtype=float).reshape(3, 3)
        c = np.asarray(self._affine.GetCenter(), dtype=float)
        t = np.asarray(self._affine.GetTranslation(), dtype=float)
        m = np.eye(4)
        m[:3, :3] = a
        m[:3, 3] = t + c - a @ c
        return m


# ---- preparation -------------------------------------------------------------------


def _bbox_index(mask: np.ndarray, volume: Volume, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(start_zyx, stop_zyx) of the mask's bounding box widened by margin_mm, clipped to the grid."""
    idx = np.nonzero(mask)
    if not idx[0].size:
        raise MaskError("the liver mask is empty, so the studies cannot be registered within the liver")
    lo = np.array([i.min() for i in idx])
    hi = np.array([i.max() for i in idx]) + 1
    pad = np.ceil(margin_mm / np.asarray(volume.spacing_zyx)).astype(int)
    shape = np.asarray(mask.shape)
    return np.maximum(lo - pad, 0), np.minimum(hi + pad, shape)


def _working_grid(geom: Volume, start: np.ndarray, stop: np.ndarray, spacing_mm: float) -> Any:
    """A SimpleITK reference image on an isotropic grid covering the index box [start, stop)."""
    import SimpleITK as sitk

    extent_xyz = (stop - start)[::-1] * np.asarray(geom.spacing_xyz)
    size = [max(1, int(np.ceil(e / spacing_mm))) for e in extent_xyz]
    corner_zyx = start.astype(float) - 0.5
    corner = geom.voxel_to_mm(corner_zyx)
    d = geom.direction_matrix
    origin = corner + d @ (np.full(3, spacing_mm / 2.0))
    ref = sitk.Image(size, sitk.sitkFloat32)
    ref.SetSpacing((spacing_mm,) * 3)
    ref.SetOrigin(tuple(float(v) for v in origin))
    ref.SetDirection(geom.direction)
    return ref


def _crop(geom: Volume, array: np.ndarray, start: np.ndarray, stop: np.ndarray) -> Any:
    """The index box [start, stop) of ``array`` (on ``geom``'s grid) as a SimpleITK image."""
    sub = np.ascontiguousarray(array[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]])
    img = _sitk_from(sub, geom)
    img.SetOrigin(tuple(float(v) for v in geom.voxel_to_mm(start.astype(float))))
    return img


def _sitk_from(arr: np.ndarray, geom: Volume) -> Any:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(geom.spacing_xyz)
    img.SetOrigin(geom.origin_lps)
    img.SetDirection(geom.direction)
    return img


def _prepare(
    geom: Volume, liver: np.ndarray, ct: np.ndarray | None, *, margin_mm: float, spacing_mm: float
) -> tuple[Any, Any, Any]:
    """(ct image or None, liver fraction image, reference grid) on the working grid."""
    import SimpleITK as sitk

    start, stop = _bbox_index(liver, geom, margin_mm)
    ref = _working_grid(geom, start, stop, spacing_mm)
    liver_img = sitk.Cast(_crop(geom, liver.astype(np.uint8), start, stop), sitk.sitkFloat32)
    sigma = [max(0.0, 0.5 * (spacing_mm - s)) if spacing_mm > s else 0.0 for s in geom.spacing_xyz]
    if any(s > 0 for s in sigma):
        liver_img = sitk.SmoothingRecursiveGaussian(liver_img, [max(s, 1e-3) for s in sigma])
    liver_w = sitk.Resample(liver_img, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    ct_w = None
    if ct is not None:
        ct_img = sitk.Cast(_crop(geom, ct, start, stop), sitk.sitkFloat32)
        ct_img = sitk.Clamp(ct_img, sitk.sitkFloat32, *ct_window_hu)
        if any(s > 0 for s in sigma):
            ct_img = sitk.SmoothingRecursiveGaussian(ct_img, [max(s, 1e-3) for s in sigma])
        ct_w = sitk.Resample(ct_img, ref, sitk.Transform(), sitk.sitkLinear, float(ct_window_hu[0]), sitk.sitkFloat32)
    return ct_w, liver_w, ref


def _distance_map(liver_fraction: Any) -> Any:
    import SimpleITK as sitk

    binary = sitk.BinaryThreshold(liver_fraction, 0.5, 1e9, 1, 0)
    dist = sitk.SignedMaurerDistanceMap(binary, insideIsPositive=False, squaredDistance=False, useImageSpacing=True)
    return sitk.Clamp(sitk.Cast(dist, sitk.sitkFloat32), sitk.sitkFloat32, -_DIST_CLIP_MM, _DIST_CLIP_MM)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def _warped_dice(fixed_liver: Any, moving_liver: Any, transform: Any) -> float:
    import SimpleITK as sitk

    warped = sitk.Resample(moving_liver, fixed_liver, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return _dice(sitk.GetArrayViewFromImage(fixed_liver) >= 0.5, sitk.GetArrayViewFromImage(warped) >= 0.5)


def _itk_seed(seed: int) -> int:
    """SimpleITK reads a sampling seed of 0 as "seed from the wall clock", so shift by one."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return int(seed) + 1


def _level_percentages(mask: Any, shrink: list[int], *, sampling_percentage: float, max_samples: int) -> list[float]:
    """Per-level sampling fraction: ``sampling_percentage`` capped at about ``max_samples`` mask voxels."""
    import SimpleITK as sitk

    n_mask = float(np.count_nonzero(sitk.GetArrayViewFromImage(mask)))
    out = []
    for f in shrink:
        n_level = max(1.0, n_mask / float(f) ** 3)
        out.append(float(min(sampling_percentage, 1.0, max(max_samples / n_level, 1e-3))))
    return out


def _method(
    *,
    metric: str,
    mask: Any,
    seed: int,
    sampling_percentage: float,
    max_samples: int,
    shrink: list[int],
    iterations: int,
    threads: int,
) -> Any:
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetNumberOfThreads(threads)
    if metric == "mattes_mi":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    else:
        reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(
        _level_percentages(mask, shrink, sampling_percentage=sampling_percentage, max_samples=max_samples), _itk_seed(seed)
    )
    reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel([max(0, f // 2) for f in shrink])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6, gradientMagnitudeTolerance=1e-8
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


def _run(reg: Any, fixed: Any, moving: Any, name: str, *, threads: int) -> dict[str, Any]:
    import SimpleITK as sitk

    t0 = time.perf_counter()
    # ITK's v4 metrics take their thread count from the global default, not from the method
    saved = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    try:
        reg.Execute(fixed, moving)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(saved)
    return {
        "name": name,
        "iterations": int(reg.GetOptimizerIteration()),
        "metric": float(reg.GetMetricValue()),
        "stop": reg.GetOptimizerStopConditionDescription(),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def register_liver(
    prior_geometry: Volume,
    prior_liver: np.ndarray,
    current_geometry: Volume,
    current_liver: np.ndarray,
    *,
    prior_ct: np.ndarray | None = None,
    current_ct: np.ndarray | None = None,
    deformable: bool = False,
    working_spacing_mm: float = 2.0,
    margin_mm: float = 15.0,
    bspline_grid_mm: float = 50.0,
    sampling_percentage: float = 0.5,
    max_samples: int = 20000,
    bspline_sampling_percentage: float = 0.05,
    bspline_iterations: int = 15,
    seed: int = 0,
    iterations: int = 200,
    threads: int = 1,
    landmarks_prior_mm: np.ndarray | None = None,
    landmarks_current_mm: np.ndarray | None = None,
) -> Registration:
    """Register the current study to the prior within the liver.

    Parameters
    ----------
    prior_geometry, current_geometry: Volume
        Grids of the two studies (only geometry is used; the array may be anything).
    prior_liver, current_liver: (Z, Y, X) bool ndarray
        Liver masks on those grids.
    prior_ct, current_ct: (Z, Y, X) ndarray of HU, optional
        The CTs; with both, mutual information on the windowed CT is used,
        otherwise mean squares on the liver distance maps.
    deformable: bool
        Add a B-spline stage after the affine one.
    working_spacing_mm: float
        Isotropic spacing of the grid the registration runs on.
    margin_mm: float
        Widening of the prior liver box and of the metric mask.
    bspline_grid_mm: float
        Control-point spacing of the B-spline.
    sampling_percentage: float
        Largest fraction of the voxels sampled per iteration of the linear stages
        (random, fixed ``seed``).
    max_samples: int
        Cap on the number of mask voxels sampled per iteration at each resolution
        level, which bounds the cost on large livers.
    bspline_sampling_percentage: float
        The same for the B-spline stage.
    bspline_iterations: int
        Iteration limit of the L-BFGS-B optimiser of the B-spline stage.
    seed: int
        Seed of the metric sampling (>= 0; passed to ITK as ``seed + 1`` because ITK
        takes 0 to mean "seed from the clock").
    iterations: int
        Iterations per resolution level of each linear stage.
    threads: int
        Threads of the metric evaluation. With more than one, ITK sums the
        per-thread metric contributions in an order that varies from run to run,
        so results differ in the 7th digit; the default 1 keeps them identical.
    landmarks_prior_mm, landmarks_current_mm: (N, 3) ndarray, optional
        Corresponding LPS points for the landmark error.

    Returns
    -------
    Registration
    """
    import SimpleITK as sitk

    t0 = time.perf_counter()
    use_ct = prior_ct is not None and current_ct is not None
    f_ct, f_liv, _ = _prepare(prior_geometry, prior_liver, prior_ct if use_ct else None, margin_mm=margin_mm, spacing_mm=working_spacing_mm)
    m_ct, m_liv, _ = _prepare(
        current_geometry, current_liver, current_ct if use_ct else None, margin_mm=2 * margin_mm, spacing_mm=working_spacing_mm
    )
    if use_ct:
        fixed, moving, metric = f_ct, m_ct, "mattes_mi"
    else:
        fixed, moving, metric = _distance_map(f_liv), _distance_map(m_liv), "mean_squares"
    # metric mask: prior liver dilated by margin_mm
    f_bin = sitk.BinaryThreshold(f_liv, 0.5, 1e9, 1, 0)
    radius = max(1, int(round(margin_mm / working_spacing_mm)))
    mask = sitk.BinaryDilate(f_bin, [radius] * 3)

    initial = sitk.CenteredTransformInitializer(
        f_liv, m_liv, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS
    )
    dice_before = _warped_dice(f_liv, m_liv, sitk.Transform())
    stages: list[dict[str, Any]] = []

    rigid = sitk.Euler3DTransform(initial)
    reg = _method(metric=metric, mask=mask, seed=seed, sampling_percentage=sampling_percentage, max_samples=max_samples, shrink=[4, 2, 1], iterations=iterations, threads=threads)
    reg.SetInitialTransform(rigid, inPlace=True)
    stages.append(_run(reg, fixed, moving, "rigid", threads=threads))

    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    reg = _method(metric=metric, mask=mask, seed=seed, sampling_percentage=sampling_percentage, max_samples=max_samples, shrink=[2, 1], iterations=iterations, threads=threads)
    reg.SetInitialTransform(affine, inPlace=True)
    stages.append(_run(reg, fixed, moving, "affine", threads=threads))
    final: Any = affine

    if deformable:
        phys = np.asarray(fixed.GetSize()) * np.asarray(fixed.GetSpacing())
        mesh = [max(1, int(round(p / bspline_grid_mm))) for p in phys]
        bspline = sitk.BSplineTransformInitializer(fixed, mesh, order=3)
        reg = sitk.ImageRegistrationMethod()
        reg.SetNumberOfThreads(threads)
        if metric == "mattes_mi":
            reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
        else:
            reg.SetMetricAsMeanSquares()
        reg.SetMetricSamplingStrategy(reg.RANDOM)
        reg.SetMetricSamplingPercentage(bspline_sampling_percentage, _itk_seed(seed))
        reg.SetMetricFixedMask(mask)
        reg.SetInterpolator(sitk.sitkLinear)
        reg.SetShrinkFactorsPerLevel([1])
        reg.SetSmoothingSigmasPerLevel([0])
        reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=bspline_iterations,
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=2 * bspline_iterations,
        )
        reg.SetMovingInitialTransform(affine)
        reg.SetInitialTransform(bspline, inPlace=True)
        stages.append(_run(reg, fixed, moving, "bspline", threads=threads))
        final = sitk.CompositeTransform([affine, bspline])

    result = Registration(
        transform=final,
        image_kind="ct" if use_ct else "liver_distance_map",
        metric=metric,
        final_metric=stages[-1]["metric"],
        liver_dice_before=dice_before,
        liver_dice_after=_warped_dice(f_liv, m_liv, final),
        stages=stages,
        working_spacing_mm=working_spacing_mm,
        deformable=deformable,
        _affine=affine,
        _affine_inverse=affine.GetInverse(),
    )
    if landmarks_prior_mm is not None and landmarks_current_mm is not None:
        lp = np.asarray(landmarks_prior_mm, dtype=float).reshape(-1, 3)
        lc = np.asarray(landmarks_current_mm, dtype=float).reshape(-1, 3)
        if lp.shape != lc.shape:
            raise ValueError("landmark arrays must have the same shape")
        result.landmark_errors_mm = np.linalg.norm(result.prior_to_current(lp) - lc, axis=1)
    result.elapsed_s = round(time.perf_counter() - t0, 3)
    return result
