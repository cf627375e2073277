"""Shared test fixtures: location of ../shared/data, small volumes."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (real test data lives beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def abdomen_variants():
    """``bench/eval_segment_variants.py`` as a module, with the real abdomen it varies loaded once.

    Returns ``(module, volume, labels)``; skips when ../shared/data is absent.
    """
    import importlib.util

    bench = Path(__file__).resolve().parents[1] / "bench" / "eval_segment_variants.py"
    spec = importlib.util.spec_from_file_location("eval_segment_variants", bench)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not module.TS.is_dir():
        pytest.skip("../shared/data is absent (real test data lives beside the repository)")
    vol, labels = module.load_case()
    return module, vol, labels
