"""Scoring analyses against phantom/insertion ground truth (``calcscope evaluate``)."""

from ._score import SIZE_BANDS, BandResult, FalsePositive, KindResult, ObjectResult, Score, load_analysis, load_truth, score, size_band

__all__ = [
    "score",
    "Score",
    "ObjectResult",
    "KindResult",
    "BandResult",
    "FalsePositive",
    "SIZE_BANDS",
    "size_band",
    "load_truth",
    "load_analysis",
]
