"""Design review: check a network against the published design guidelines, with evidence.

Every rule is a small registered unit (:mod:`archlab.review.rule`) in one file per family:
``efficiency`` (ShuffleNetV2 G1-G4), ``layers`` (A6, A12, B8, kernels, widths, final
activation), ``depth`` (B9, B10), ``spatial`` (receptive field, A9). All rules read the same
:class:`~archlab.review.facts.Facts`, recorded from a design or from any ``torch.nn.Module``.

    >>> import archlab
    >>> findings = archlab.review("vgg19")
    >>> sorted({f.rule for f in findings} & {"deep-plain-stack", "no-normalisation"})
    ['deep-plain-stack', 'no-normalisation']
"""

import sys
import types

# registers the rules; this order is the order of `--rules`, SARIF and docs/review-rules.md
from . import efficiency, layers, depth, spatial  # noqa: F401  isort: skip
from .config import ReviewConfig, Suppression, load_pyproject, parse_config
from .rule import RULES, SEVERITIES, Finding, Rule, register_rule
from .run import ReviewResult, review, run_review

__all__ = [
    "RULES",
    "SEVERITIES",
    "Finding",
    "ReviewConfig",
    "ReviewResult",
    "Rule",
    "Suppression",
    "load_pyproject",
    "parse_config",
    "register_rule",
    "review",
    "run_review",
]


class _CallableModule(types.ModuleType):
    """``archlab.review`` is both this package and the function :func:`review`. Importing a
    submodule (``archlab.review.command``, as the CLI does) binds the package to the name
    ``archlab.review``, replacing the lazily exported function; calling the package therefore
    calls the function, so ``archlab.review(design)`` works in either order of imports."""

    def __call__(self, *args, **kwargs):
        return review(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
