"""Compare a baseline with its variants: designs before training, runs after (C2, C10).

    from archlab.compare import compare
    c = compare(["resnet18", "resnet18?width=32"])      # the first operand is the baseline
    c.rows(), c.to_json(), c.to_csv()

See docs/compare.md for the operand syntax, the figures and the JSON schema.
"""

from .compare import compare
from .diff import GraphDiff, NodeChange, diff_designs
from .figures import FIGURES, DesignFigures, design_figures
from .operands import Operand, parse_operand, parse_operands, split_operand
from .pareto import Point, pareto_front, plot_pareto
from .result import PARETO_COSTS, RUN_FIGURES, SCHEMA, Comparison, Entry
from .runs import RunFigures, list_runs, run_figures, time_to_reach

__all__ = [
    "FIGURES", "PARETO_COSTS", "RUN_FIGURES", "SCHEMA", "Comparison", "DesignFigures", "Entry",
    "GraphDiff", "NodeChange", "Operand", "Point", "RunFigures", "compare", "design_figures",
    "diff_designs", "list_runs", "parse_operand", "parse_operands", "pareto_front", "plot_pareto",
    "run_figures", "split_operand", "time_to_reach",
]
