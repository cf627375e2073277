"""The loader on inputs generated here: a corpus of bad inputs, each refused with its own
error class and exit code and without leftovers, and the good cases next to them.

Every input is written into ``tmp_path`` by the tests themselves (pydicom for DICOM,
nibabel for NIfTI, zipfile for archives).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from calcscope.cli import main
from calcscope.errors import (
    ArchiveError,
    CalcscopeError,
    CorruptInputError,
    GeometryError,
    InputNotFoundError,
    ModalityError,
    SeriesSelectionError,
    UnsupportedFormatError,
    UsageError,
)
from calcscope.io import ArchiveLimits, list_series, load_ct, save_dicom_series
from calcscope.model import Volume

# --------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------


def ramp_volume(shape=(6, 20, 24), spacing=(2.5, 0.8, 0.7), origin=(-10.0, -20.0, 30.0)) -> Volume:
    """A CT-like volume whose HU encode the voxel index: -500 + 100 z + 10 y + x."""
    z, y, x = np.indices(shape)
    arr = (-500 + 100 * z + 10 * y + x).astype(np.int16)
    return Volume(array=arr, spacing_zyx=spacing, origin_lps=origin)


def write_series(folder: Path, vol: Volume | None = None, **kwargs) -> list[Path]:
    return save_dicom_series(ramp_volume() if vol is None else vol, folder, **kwargs)


def edit(files: list[Path], fn: Callable[[pydicom.Dataset, int], None]) -> None:
    """Apply ``fn(dataset, index)`` to each DICOM file and save it back."""
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        fn(ds, k)
        ds.save_as(f)


def write_nifti(path: Path, arr: np.ndarray, zooms=(0.8, 0.8, 2.5)) -> Path:
    aff = np.diag([*zooms, 1.0])
    nib.save(nib.Nifti1Image(arr, aff), str(path))
    return path


def patch_pixdim(path: Path, index: int, value: float) -> None:
    """Overwrite pixdim[index] of an uncompressed little-endian NIfTI-1 file."""
    raw = bytearray(path.read_bytes())
    raw[76 + 4 * index : 80 + 4 * index] = np.float32(value).tobytes()
    path.write_bytes(bytes(raw))


# --------------------------------------------------------------------------------------
# Bad-input corpus: builder(tmp) -> (path, extra CLI args, error class, words in message)
# --------------------------------------------------------------------------------------


def _mr(tmp: Path):
    write_series(tmp / "mr", modality="MR")
    return tmp / "mr", [], ModalityError, "MR"


def _us(tmp: Path):
    write_series(tmp / "us", modality="US")
    return tmp / "us", [], ModalityError, "US"


def _nifti_4d(tmp: Path):
    return write_nifti(tmp / "4d.nii.gz", np.full((8, 8, 4, 3), -100, np.int16)), [], GeometryError, "4-D"


def _nifti_nan(tmp: Path):
    a = np.full((8, 8, 4), -100.0, np.float32)
    a[2, 3, 1] = np.nan
    return write_nifti(tmp / "nan.nii.gz", a), [], CorruptInputError, "NaN"


def _nifti_inf(tmp: Path):
    a = np.full((8, 8, 4), -100.0, np.float32)
    a[0, 0, 0] = np.inf
    return write_nifti(tmp / "inf.nii.gz", a), [], CorruptInputError, "infinite"


def _nifti_zero_spacing(tmp: Path):
    p = write_nifti(tmp / "zero.nii", np.full((8, 8, 4), -100, np.int16))
    patch_pixdim(p, 3, 0.0)
    return p, [], GeometryError, "spacing"


def _nifti_negative_spacing(tmp: Path):
    p = write_nifti(tmp / "neg.nii", np.full((8, 8, 4), -100, np.int16))
    patch_pixdim(p, 1, -0.8)
    return p, [], GeometryError, "negative"


def _nifti_single_slice(tmp: Path):
    return write_nifti(tmp / "slice.nii.gz", np.full((8, 8, 1), -100, np.int16)), [], GeometryError, "2-D"


def _nifti_not_hu(tmp: Path):
    return write_nifti(tmp / "mr_like.nii.gz", np.full((8, 8, 4), 300, np.int16)), [], ModalityError, "no negative"


def _dicom_zero_spacing(tmp: Path):
    files = write_series(tmp / "s")
    edit(files, lambda ds, k: setattr(ds, "PixelSpacing", [0, 0.7]))
    return tmp / "s", [], GeometryError, "PixelSpacing"


def _dicom_negative_spacing(tmp: Path):
    files = write_series(tmp / "s")
    edit(files, lambda ds, k: setattr(ds, "PixelSpacing", [-0.8, 0.7]))
    return tmp / "s", [], GeometryError, "negative"


def _dicom_missing_pixel_spacing(tmp: Path):
    files = write_series(tmp / "s")
    edit(files, lambda ds, k: delattr(ds, "PixelSpacing"))
    return tmp / "s", [], GeometryError, "no PixelSpacing"


def _dicom_truncated_pixels(tmp: Path):
    files = write_series(tmp / "s")
    raw = files[3].read_bytes()
    files[3].write_bytes(raw[: len(raw) - 300])
    return tmp / "s", [], CorruptInputError, "slice0003"


def _dicom_truncated_header(tmp: Path):
    files = write_series(tmp / "s")
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[:300])
    return tmp / "s", [], CorruptInputError, "truncated"


def _text_named_dcm(tmp: Path):
    p = tmp / "report.dcm"
    p.write_text("Patient report: not an image\n" * 20)
    return p, [], UnsupportedFormatError, ".dcm"


def _folder_of_text_dcm(tmp: Path):
    (tmp / "f").mkdir()
    for i in range(3):
        (tmp / "f" / f"IM{i}.dcm").write_text("hello, I am not DICOM\n")
    return tmp / "f", [], UnsupportedFormatError, "not DICOM"


def _empty_folder(tmp: Path):
    (tmp / "empty" / "sub").mkdir(parents=True)
    return tmp / "empty", [], InputNotFoundError, "empty"


def _symlink_loop(tmp: Path):
    os.symlink(tmp / "loop_b", tmp / "loop_a")
    os.symlink(tmp / "loop_a", tmp / "loop_b")
    return tmp / "loop_a", [], InputNotFoundError, "loop"


def _dangling_link(tmp: Path):
    os.symlink(tmp / "gone.nii.gz", tmp / "link.nii.gz")
    return tmp / "link.nii.gz", [], InputNotFoundError, "target does not exist"


def _nonexistent(tmp: Path):
    return tmp / "no_such_ct.nii.gz", [], InputNotFoundError, "does not exist"


def _zip_bomb_ratio(tmp: Path):
    p = tmp / "bomb.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.dcm", "w", force_zip64=True) as fh:
            block = bytes(1 << 20)
            for _ in range(64):  # 64 MiB of zeros -> about 64 KiB compressed
                fh.write(block)
    return p, [], ArchiveError, "zip bomb"


def _zip_bomb_declared(tmp: Path):
    """Three tiny entries whose central-directory headers declare ~4 GiB each."""
    p = tmp / "declared.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_STORED) as zf:
        for i in range(3):
            zf.writestr(f"part{i}.dcm", b"x" * 10)
    raw = bytearray(p.read_bytes())
    start = 0
    while (i := raw.find(b"PK\x01\x02", start)) >= 0:
        raw[i + 24 : i + 28] = (0xFFFFFFF0).to_bytes(4, "little")
        start = i + 4
    p.write_bytes(bytes(raw))
    return p, [], ArchiveError, "GiB"


def _zip_traversal(tmp: Path):
    p = tmp / "evil.zip"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("ok/a.txt", b"fine")
        zf.writestr("../../escaped.dcm", b"evil")
    return p, [], ArchiveError, "path traversal"


def _zip_too_many(tmp: Path):
    p = tmp / "many.zip"
    with zipfile.ZipFile(p, "w") as zf:
        for i in range(12):
            zf.writestr(f"f{i}.txt", b"x")
    return p, [], ArchiveError, "entries"


def _zip_not_a_zip(tmp: Path):
    p = tmp / "broken.zip"
    p.write_bytes(b"PK\x03\x04" + b"garbage" * 10)
    return p, [], ArchiveError, "not a readable zip"


def _two_ct_series(tmp: Path):
    write_series(tmp / "study" / "a", series_description="Arterial", series_uid="1.2.826.0.1.3680043.99.1")
    write_series(tmp / "study" / "b", series_description="Portal venous", series_uid="1.2.826.0.1.3680043.99.2")
    return tmp / "study", [], SeriesSelectionError, "1.2.826.0.1.3680043.99.2"


def _unknown_series(tmp: Path):
    write_series(tmp / "s", series_uid="1.2.826.0.1.3680043.99.7")
    return tmp / "s", ["--series", "1.2.3.4.5"], SeriesSelectionError, "1.2.826.0.1.3680043.99.7"


def _duplicate_different_pixels(tmp: Path):
    files = write_series(tmp / "s")
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    arr = ds.pixel_array.copy()
    arr[5, 5] += 200
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp / "s" / "dup.dcm")
    return tmp / "s", [], GeometryError, "same position"


def _big_gap(tmp: Path):
    files = write_series(tmp / "s", ramp_volume(shape=(8, 20, 24)))
    files[3].unlink()
    files[4].unlink()
    return tmp / "s", [], GeometryError, "missing"


def _single_slice_folder(tmp: Path):
    files = write_series(tmp / "s")
    for f in files[1:]:
        f.unlink()
    return tmp / "s", [], GeometryError, "2-D"


def _single_dicom_file(tmp: Path):
    files = write_series(tmp / "s")
    return files[0], [], GeometryError, "single 2-D"


def _tilt_too_large(tmp: Path):
    vol = ramp_volume()
    files = write_series(tmp / "s", vol)
    shift_mm = np.tan(np.radians(40.0)) * vol.spacing_zyx[0]

    def tilt(ds, k):
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ipp[1] += k * shift_mm
        ds.ImagePositionPatient = [f"{v:.6f}" for v in ipp]

    edit(files, tilt)
    return tmp / "s", [], GeometryError, "gantry tilt"


def _non_ct_only_nonimage(tmp: Path):
    files = write_series(tmp / "s", modality="SEG")
    for f in files[1:]:
        f.unlink()
    return tmp / "s", [], UnsupportedFormatError, "non-image"


def _two_nifti_no_choice(tmp: Path):
    (tmp / "f").mkdir()
    write_nifti(tmp / "f" / "a.nii.gz", np.full((8, 8, 4), -100, np.int16))
    write_nifti(tmp / "f" / "b.nii.gz", np.full((8, 8, 4), -100, np.int16))
    return tmp / "f", [], SeriesSelectionError, "b.nii.gz"


def _series_for_a_single_file(tmp: Path):
    p = write_nifti(tmp / "ct.nii.gz", np.full((8, 8, 4), -100, np.int16))
    return p, ["--series", "1.2.3"], UsageError, "single file"


CORPUS = {
    "two_nifti_files_no_choice": _two_nifti_no_choice,
    "series_for_a_single_file": _series_for_a_single_file,
    "mr_modality": _mr,
    "us_modality": _us,
    "nifti_4d": _nifti_4d,
    "nifti_nan": _nifti_nan,
    "nifti_inf": _nifti_inf,
    "nifti_zero_spacing": _nifti_zero_spacing,
    "nifti_negative_spacing": _nifti_negative_spacing,
    "nifti_single_slice": _nifti_single_slice,
    "nifti_not_hu": _nifti_not_hu,
    "dicom_zero_spacing": _dicom_zero_spacing,
    "dicom_negative_spacing": _dicom_negative_spacing,
    "dicom_missing_pixel_spacing": _dicom_missing_pixel_spacing,
    "dicom_truncated_pixels": _dicom_truncated_pixels,
    "dicom_truncated_header": _dicom_truncated_header,
    "text_named_dcm": _text_named_dcm,
    "folder_of_text_dcm": _folder_of_text_dcm,
    "empty_folder": _empty_folder,
    "symlink_loop": _symlink_loop,
    "dangling_link": _dangling_link,
    "nonexistent": _nonexistent,
    "zip_bomb_ratio": _zip_bomb_ratio,
    "zip_bomb_declared": _zip_bomb_declared,
    "zip_traversal": _zip_traversal,
    "zip_too_many_entries": _zip_too_many,
    "zip_not_a_zip": _zip_not_a_zip,
    "two_ct_series_no_choice": _two_ct_series,
    "unknown_series_uid": _unknown_series,
    "duplicate_slices_different_pixels": _duplicate_different_pixels,
    "big_gap": _big_gap,
    "single_slice_folder": _single_slice_folder,
    "single_dicom_file": _single_dicom_file,
    "gantry_tilt_too_large": _tilt_too_large,
    "only_non_image_dicom": _non_ct_only_nonimage,
}


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Inputs in tmp/in, the system temp folder redirected to tmp/systmp, cwd tmp/cwd."""
    inputs, systmp, cwd = tmp_path / "in", tmp_path / "systmp", tmp_path / "cwd"
    for d in (inputs, systmp, cwd):
        d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    monkeypatch.chdir(cwd)
    return inputs, systmp, cwd


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_is_refused_with_its_error_and_exit_code(case, sandbox, capsys, monkeypatch):
    inputs, systmp, cwd = sandbox
    if case == "zip_too_many_entries":
        monkeypatch.setattr("calcscope.io._archive.DEFAULT_ARCHIVE_LIMITS", ArchiveLimits(max_entries=10))
    path, extra, err_cls, words = CORPUS[case](inputs)
    before = _snapshot(inputs)

    with pytest.raises(CalcscopeError) as info:
        load_ct(path, series=extra[1] if extra else None)
    assert type(info.value) is err_cls, info.value
    assert words.lower() in info.value.paragraph().lower()

    code = main(["info", "--json", str(path), *extra])
    out, err = capsys.readouterr()
    assert code == err_cls.exit_code
    assert out == ""  # no JSON for a refused input
    assert err.startswith(f"calcscope: {err_cls.__name__}:")
    assert "Traceback" not in err and err.count("\n") == 1  # one paragraph

    # nothing left behind: no temp folder, nothing written beside the input or in cwd
    assert list(systmp.iterdir()) == []
    assert list(cwd.iterdir()) == []
    assert _snapshot(inputs) == before


@pytest.mark.parametrize("keep_bytes", [140, 300, 400, 700, 900, -300, -1])
def test_a_slice_truncated_anywhere_is_refused(tmp_path, keep_bytes):
    """pydicom reads a cut header without complaint; the loader must still notice."""
    files = write_series(tmp_path / "s")
    raw = files[2].read_bytes()
    files[2].write_bytes(raw[:keep_bytes])
    with pytest.raises(CorruptInputError, match="slice0002"):
        load_ct(tmp_path / "s")


def test_error_inside_a_zip_names_the_member(tmp_path):
    files = write_series(tmp_path / "s")
    files[1].write_bytes(files[1].read_bytes()[:400])
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        for f in files:
            zf.write(f, f"exp/{f.name}")
    with pytest.raises(CorruptInputError) as info:
        load_ct(tmp_path / "a.zip")
    assert info.value.path == f"{tmp_path / 'a.zip'}!/exp/slice0001.dcm"


def test_corpus_has_at_least_twenty_distinct_cases():
    assert len(CORPUS) >= 20
    assert len({fn for fn in CORPUS.values()}) == len(CORPUS)


def test_distinct_exit_codes_per_error_class():
    classes = [ModalityError, GeometryError, CorruptInputError, InputNotFoundError, UnsupportedFormatError,
               SeriesSelectionError, ArchiveError]
    assert len({c.exit_code for c in classes}) == len(classes)


def _run_unprivileged(fn: Callable[[], int]) -> int:
    """Run ``fn`` in a forked child that dropped root privileges; return its exit status."""
    main(["info", "/nonexistent-warmup"])  # import everything lazily loaded before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 99
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_unreadable_path_is_refused(what, tmp_path, capsys):
    """chmod 000; as root the permission bits are ignored, so the check runs as 'nobody'."""
    is_root = os.geteuid() == 0
    # a folder every user can traverse (tmp_path's parents are private to root)
    base = Path(tempfile.mkdtemp(prefix="calcscope-perm-test-")) if is_root else tmp_path
    try:
        os.chmod(base, 0o711)
        target = base / ("ct.nii.gz" if what == "file" else "series")
        if what == "file":
            write_nifti(target, np.full((8, 8, 4), -100, np.int16))
        else:
            write_series(target)
        os.chmod(target, 0o000)

        def attempt() -> int:
            try:
                load_ct(target)
            except InputNotFoundError as exc:
                assert "permission denied" in exc.paragraph()
            else:
                return 98
            return main(["info", str(target)])

        code = _run_unprivileged(attempt) if is_root else attempt()
        assert code == InputNotFoundError.exit_code
    finally:
        os.chmod(target, 0o700)
        if is_root:
            shutil.rmtree(base)


# --------------------------------------------------------------------------------------
# Good cases
# --------------------------------------------------------------------------------------


def test_rescale_slope_and_intercept_are_applied(tmp_path):
    vol = ramp_volume()
    write_series(tmp_path / "s", vol, rescale_slope=2.0, rescale_intercept=-1024.0)
    ds = pydicom.dcmread(sorted((tmp_path / "s").iterdir())[0])
    assert float(ds.RescaleSlope) == 2.0 and int(ds.pixel_array[0, 0]) == (-500 + 1024) // 2
    got = load_ct(tmp_path / "s")
    # stored values are round((HU + 1024) / 2): odd HU lose their last bit
    expected = 2 * np.round((vol.array.astype(float) + 1024) / 2) - 1024
    np.testing.assert_array_equal(got.array, expected)
    assert got.array.dtype == np.int16
    assert got.meta["rescale"] == {"slopes": [2.0], "intercepts": [-1024.0]}
    np.testing.assert_allclose(got.spacing_zyx, vol.spacing_zyx, atol=1e-6)
    np.testing.assert_allclose(got.origin_lps, vol.origin_lps, atol=1e-6)
    assert got.orientation_code() == "LPS"
    assert got.modality == "CT" and len(got.source_files) == 6 and len(got.instance_uids) == 6


def test_slices_are_sorted_by_position_not_by_file_name(tmp_path):
    vol = ramp_volume()
    files = write_series(tmp_path / "s", vol)
    # shuffle instance numbers and file names
    for k, f in enumerate(files):
        f.rename(tmp_path / "s" / f"x{(k * 7) % 11:02d}_{k}.dcm")
    edit(sorted((tmp_path / "s").iterdir()), lambda ds, k: setattr(ds, "InstanceNumber", 100 - k))
    got = load_ct(tmp_path / "s")
    np.testing.assert_array_equal(got.array, vol.array)
    positions = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in got.source_files]
    assert positions == sorted(positions)


def test_uneven_spacing_is_resampled_onto_a_regular_grid(tmp_path):
    vol = ramp_volume(shape=(8, 20, 24))
    files = write_series(tmp_path / "s", vol)
    files[3].unlink()  # one missing slice: gap 5 mm where the spacing is 2.5 mm (= 2x, mild)
    got = load_ct(tmp_path / "s")
    assert got.shape == vol.shape
    assert got.spacing_zyx[0] == pytest.approx(2.5, abs=1e-6)
    # the ramp is linear along z, so linear interpolation restores the missing slice exactly
    np.testing.assert_array_equal(got.array, vol.array)
    step = got.meta["resampling"][0]
    assert step["reason"] == "uneven slice spacing"
    assert step["source_gaps_mm"]["max"] == pytest.approx(5.0) and step["n_slices_after"] == 8
    assert got.source_files == [] and len(got.meta["source_slices_before_resampling"]) == 7


def test_identical_duplicate_slices_are_dropped_and_recorded(tmp_path):
    files = write_series(tmp_path / "s")
    ds = pydicom.dcmread(files[1])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(tmp_path / "s" / "copy.dcm")
    got = load_ct(tmp_path / "s")
    assert got.shape == (6, 20, 24)
    assert got.meta["duplicates_dropped"] == ["slice0001.dcm"] or got.meta["duplicates_dropped"] == ["copy.dcm"]
    np.testing.assert_array_equal(got.array, ramp_volume().array)


def test_gantry_tilt_is_corrected_to_an_orthogonal_grid(tmp_path):
    """A tilted acquisition of a cube (1 pixel sideways shift per slice) is restacked in place."""
    shape, spacing = (8, 24, 20), (2.0, 1.0, 1.0)
    truth = np.full(shape, -100, np.int16)
    truth[3:6, 10:14, 6:10] = 400
    true_vol = Volume(array=truth, spacing_zyx=spacing, origin_lps=(0.0, 0.0, 0.0))
    # slice k of the tilted acquisition starts 1 mm (one row) further along +y (posterior)
    tilted = np.full(shape, -100, np.int16)
    for k in range(shape[0]):
        tilted[k, : shape[1] - k] = truth[k, k:]
    files = write_series(tmp_path / "s", Volume(array=tilted, spacing_zyx=spacing))

    def tilt(ds, k):
        ds.ImagePositionPatient = ["0", f"{k * 1.0:.6f}", f"{k * 2.0:.6f}"]

    edit(files, tilt)
    got = load_ct(tmp_path / "s")
    assert got.meta["gantry_tilt_deg"] == pytest.approx(np.degrees(np.arctan(0.5)), abs=1e-3)
    assert got.meta["resampling"][0]["reason"] == "gantry tilt"
    assert got.orientation_code() == "LPS" and got.spacing_zyx == pytest.approx(spacing)
    for k in range(shape[0]):  # covered rows equal the truth, uncovered rows are air
        np.testing.assert_array_equal(got.array[k, k:], truth[k, k:])
        assert np.all(got.array[k, :k] == -1024)
    cube_got = got.voxel_to_mm(np.argwhere(got.array == 400).mean(0))
    cube_true = true_vol.voxel_to_mm(np.argwhere(truth == 400).mean(0))
    np.testing.assert_allclose(cube_got, cube_true, atol=1e-6)


def test_pixel_padding_value_becomes_air_and_is_recorded(tmp_path):
    vol = ramp_volume()
    arr = vol.array.copy()
    arr[:, :3, :] = -3024  # padded rows outside the field of view
    write_series(tmp_path / "s", vol.with_array(arr), rescale_intercept=-1024.0, pixel_padding_value=-2000)
    got = load_ct(tmp_path / "s")
    assert np.all(got.array[:, :3, :] == -1024)
    np.testing.assert_array_equal(got.array[:, 3:, :], vol.array[:, 3:, :])
    pad = got.meta["padding"]
    assert pad["source"] == "PixelPaddingValue" and pad["value_hu"] == -3024.0 and pad["voxels"] == 6 * 3 * 24


def test_padding_plateau_without_tag_is_inferred(tmp_path):
    arr = np.full((4, 16, 16), -50, np.int16)
    arr[:, :, :2] = -3024
    got = load_ct(write_nifti(tmp_path / "pad.nii.gz", arr))
    assert got.meta["padding"]["source"] == "inferred" and got.meta["padding"]["voxels"] == 4 * 16 * 2
    assert int(got.array.min()) == -1024


def test_zip_of_a_dicom_folder_loads_and_cleans_up(tmp_path, monkeypatch):
    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    vol = ramp_volume()
    files = write_series(tmp_path / "export" / "series1", vol)
    (tmp_path / "export" / "README.txt").write_text("exported by PACS")
    z = tmp_path / "study.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in (*files, tmp_path / "export" / "README.txt"):
            zf.write(f, f.relative_to(tmp_path).as_posix())
    got = load_ct(z)
    np.testing.assert_array_equal(got.array, vol.array)
    assert got.meta["archive"] == "study.zip"
    assert got.meta["archive_members"][0] == "export/series1/slice0000.dcm"
    assert got.source_files == [] and len(got.instance_uids) == 6
    assert list(systmp.iterdir()) == []
    assert [s.n_slices for s in list_series(z)] == [6]


def test_folder_of_image_files_choose_by_name(tmp_path):
    write_nifti(tmp_path / "a.nii.gz", np.full((8, 8, 4), -100, np.int16))
    write_nifti(tmp_path / "b.nii.gz", np.full((8, 8, 5), -200, np.int16))
    got = load_ct(tmp_path, series="b.nii.gz")
    assert got.shape == (5, 8, 8) and int(got.array[0, 0, 0]) == -200


def test_zip_of_a_nifti_loads(tmp_path):
    arr = np.full((4, 10, 12), -20, np.int16)
    p = write_nifti(tmp_path / "ct.nii.gz", arr)
    z = tmp_path / "ct.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(p, "nested/ct.nii.gz")
    got = load_ct(z)
    assert got.shape == (12, 10, 4) and got.meta["archive"] == "ct.zip"  # nibabel (x, y, z) -> (z, y, x)


def test_choosing_one_of_two_series(tmp_path, capsys):
    a, b = ramp_volume(), ramp_volume(shape=(5, 20, 24))
    write_series(tmp_path / "a", a, series_uid="1.2.826.0.1.3680043.99.11", series_description="Arterial")
    write_series(tmp_path / "b", b, series_uid="1.2.826.0.1.3680043.99.12", series_description="Portal venous")
    got = load_ct(tmp_path, series="1.2.826.0.1.3680043.99.12")
    assert got.shape == (5, 20, 24) and got.series_uid == "1.2.826.0.1.3680043.99.12"
    assert got.source == "Portal venous" and got.meta["ignored"] == {"other_series": 1}
    with pytest.raises(SeriesSelectionError) as info:
        load_ct(tmp_path)
    msg = info.value.paragraph()
    for piece in ("Arterial", "Portal venous", "6 slice(s)", "5 slice(s)", "slice thickness 2.5 mm", "--series"):
        assert piece in msg


def test_allow_modality_accepts_mr(tmp_path):
    write_series(tmp_path / "mr", modality="MR")
    got = load_ct(tmp_path / "mr", allow_modality=True)
    assert got.modality == "MR" and got.shape == (6, 20, 24)


def test_non_dicom_files_beside_a_series_are_ignored(tmp_path):
    vol = ramp_volume()
    write_series(tmp_path / "s", vol)
    (tmp_path / "s" / "DICOMDIR.txt").write_text("index")
    (tmp_path / "s" / "notes.dcm").write_text("not dicom either")
    got = load_ct(tmp_path / "s")
    np.testing.assert_array_equal(got.array, vol.array)
    assert got.meta["ignored"] == {"non_dicom_files": 2}


def test_link_loop_and_fifo_inside_a_series_folder_are_skipped(tmp_path):
    vol = ramp_volume()
    write_series(tmp_path / "s", vol)
    os.symlink(tmp_path / "s" / "loop2", tmp_path / "s" / "loop1")
    os.symlink(tmp_path / "s" / "loop1", tmp_path / "s" / "loop2")
    os.mkfifo(tmp_path / "s" / "pipe")  # opening it would block; it must not be opened
    got = load_ct(tmp_path / "s")
    np.testing.assert_array_equal(got.array, vol.array)
    assert got.meta["ignored"] == {"unreadable_files": 2}


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nrrd_and_metaimage_load_with_geometry(tmp_path, suffix):
    import SimpleITK as sitk

    vol = ramp_volume()
    img = vol.to_sitk()
    img.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))  # LAS
    sitk.WriteImage(img, str(tmp_path / f"ct{suffix}"))
    got = load_ct(tmp_path / f"ct{suffix}")
    np.testing.assert_array_equal(got.array, vol.array)
    assert got.orientation_code() == "LAS"
    np.testing.assert_allclose(got.voxel_to_mm((2, 3, 4)), [-10 + 4 * 0.7, -20 - 3 * 0.8, 30 + 2 * 2.5])
