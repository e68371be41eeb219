"""Judging generated images without anything pre-trained: a classifier archlab trains on the
same data set supplies the feature space (docs/training.md#judging-samples).

* :func:`frechet_distance`, :func:`precision_recall` (Kynkaanniemi et al. 2019),
  :func:`class_coverage` (confident share, class histogram): :mod:`archlab.judge.metrics`;
* :class:`Judge`: the cached classifier of a data set and the report of a sample set:
  :mod:`archlab.judge.classifier`.
"""

from .classifier import Judge, judge_name
from .metrics import class_coverage, frechet_distance, precision_recall

__all__ = ["Judge", "class_coverage", "frechet_distance", "judge_name", "precision_recall"]
