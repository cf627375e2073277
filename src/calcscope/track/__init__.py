"""Follow-up: compare a prior and a current study.

* :func:`load_study` reads one side: an analysed-study folder (``analysis.json`` +
  ``segmentation.nii.gz``, CT used when it can be found) or a CT analysed on the fly;
* :func:`register_liver` registers the current study to the prior within the liver
  (rigid, affine, optional B-spline; SimpleITK);
* :func:`match_findings` pairs findings on registered positions (Hungarian
  assignment gated by kind and size);
* :mod:`recist` holds RECIST 1.1 as pure functions (target selection, sums,
  response category with the rule applied);
* :func:`compare_studies` does all of it, computes per-finding change (volume %,
  diameter mm, doubling time), flags growing calcifications and re-runs the
  reasoning with the changes; :func:`write_comparison` writes ``comparison.json``
  and ``comparison.html``.
"""

from . import _recist as recist
from ._compare import (
    COMPARISON_SCHEMA_VERSION,
    Comparison,
    ComparisonRun,
    RecistBlock,
    RegistrationReport,
    compare_studies,
    render_comparison_html,
    write_comparison,
)
from ._growth import GrowthAlert, GrowthThresholds, assess_growth, doubling_time_days, finding_change
from ._match import MatchResult, match_findings
from ._register import Registration, register_liver
from ._study import Study, load_study, study_from_arrays

__all__ = [
    "compare_studies",
    "write_comparison",
    "render_comparison_html",
    "register_liver",
    "match_findings",
    "recist",
    "load_study",
    "study_from_arrays",
    "Study",
    "Registration",
    "MatchResult",
    "Comparison",
    "ComparisonRun",
    "RecistBlock",
    "RegistrationReport",
    "COMPARISON_SCHEMA_VERSION",
    "GrowthAlert",
    "GrowthThresholds",
    "assess_growth",
    "finding_change",
    "doubling_time_days",
]
