"""Load-time benchmark of calcscope.io.load_ct.

Times (median of N runs, wall clock):

1. a generated 512 x 512 x 300 int16 NIfTI (.nii.gz) with a body-like content (an
   elliptic trunk of soft tissue with noise in air), written to a temporary folder;
2. the 20-slice DICOM series ../shared/data/totalseg-example-ct/example_ct_dicom
   (JPEG 2000 compressed, 512 x 512), when ../shared is present.

Usage (from the repository root)::

    .venv/bin/python bench/bench_load.py [--repeats 5] [--keep DIR]

``--keep DIR`` leaves the generated NIfTI in DIR (for ``/usr/bin/time -v`` peak-RSS
measurements of a fresh process); otherwise the temporary folder is removed.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DICOM_SERIES = REPO.parent / "shared" / "data" / "totalseg-example-ct" / "example_ct_dicom"


def make_volume(shape_zyx: tuple[int, int, int] = (300, 512, 512), *, seed: int = 0) -> np.ndarray:
    """int16 HU volume: air (-1000) around an elliptic trunk (40 HU), Gaussian noise 12 HU."""
    rng = np.random.default_rng(seed)
    _, ny, nx = shape_zyx
    yy, xx = np.mgrid[0:ny, 0:nx]
    body = ((yy - ny / 2) / (0.35 * ny)) ** 2 + ((xx - nx / 2) / (0.45 * nx)) ** 2 <= 1.0
    plane = np.where(body, 40, -1000).astype(np.int16)
    out = np.empty(shape_zyx, dtype=np.int16)
    for k in range(shape_zyx[0]):
        out[k] = plane + rng.normal(0, 12, size=plane.shape).astype(np.int16)
    return out


def write_nifti(path: Path, array: np.ndarray, spacing_zyx=(1.0, 0.78, 0.78)) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(reversed(spacing_zyx)))
    sitk.WriteImage(img, str(path), useCompression=True)


def time_load(path: Path, repeats: int) -> tuple[float, list[float]]:
    from calcscope.io import load_ct

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        vol = load_ct(path)
        times.append(time.perf_counter() - t0)
        del vol
    return statistics.median(times), times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keep", type=Path, default=None, help="folder in which to leave the generated NIfTI")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="calcscope-bench-") as tmp:
        folder = args.keep if args.keep is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        nii = folder / "bench_512x512x300.nii.gz"
        t0 = time.perf_counter()
        write_nifti(nii, make_volume())
        print(f"generated {nii.name}: {nii.stat().st_size / 1024**2:.1f} MiB on disk in {time.perf_counter() - t0:.1f} s")
        med, runs = time_load(nii, args.repeats)
        print(f"load_ct NIfTI 512x512x300 int16 (.nii.gz): median {med:.3f} s over {len(runs)} runs "
              f"({', '.join(f'{r:.3f}' for r in runs)})")
    if DICOM_SERIES.is_dir():
        med, runs = time_load(DICOM_SERIES, args.repeats)
        print(f"load_ct DICOM 20 slices 512x512 (JPEG 2000): median {med:.3f} s over {len(runs)} runs "
              f"({', '.join(f'{r:.3f}' for r in runs)})")
    else:
        print("../shared/data absent: DICOM timing skipped")
    print(f"peak RSS of this whole process (generation included): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
