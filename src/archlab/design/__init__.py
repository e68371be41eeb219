"""The design language: load a design (file, zoo name, dict or YAML text) into a validated
:class:`Design` whose :class:`~archlab.graph.Graph` has every shape inferred."""

from .design import Design, load, parse_assignments

__all__ = ["Design", "load", "parse_assignments"]
