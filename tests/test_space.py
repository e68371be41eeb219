"""Design-space syntax: every kind of variable, conditions, per-stage ranges, constraints,
training options, the `search:` section, the RegNet width rule, and bad spaces (file:line + fix).

Oracle for sampling: Optuna's own distributions (what the trial records) and the design language
(the sampled design resolves to the same graph as `archlab.load` with those variables).
"""

from __future__ import annotations

import textwrap

import optuna
import pytest

import archlab
from archlab.design.regnet import regnet_stages
from archlab.errors import DesignError
from archlab.search.space import SpaceError, load_space

DESIGN = textwrap.dedent("""\
    name: anynet_small
    task: classification
    variables: {w1: 8, w2: 16, w3: 32, d1: 1, d2: 1, kind: plain, ratio: 0.5, hidden: 32,
                classes: 10}
    input: [1, 8, 8]
    defaults: {norm: batch, act: relu}
    layers:
      - {name: s1, block: conv, out: $w1, depth: $d1}
      - {name: s2, block: conv, out: $w2, depth: $d2, stride: 2}
      - {name: s3, block: conv, out: $w3, stride: 2}
      - {name: head, block: head, classes: $classes}
    """)


def write(tmp_path, text: str, name: str = "space.yaml"):
    (tmp_path / "anynet_small.yaml").write_text(DESIGN)
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return f


FULL = """\
    space: full
    design: anynet_small.yaml
    variables:
      w: {int: [8, 64], log: true, each: [w1, w2, w3]}
      d1: {int: [1, 3]}
      d2: {int: [1, 4], step: 1}
      kind: {choice: [plain, bottleneck]}
      ratio: {float: [0.25, 1.0], step: 0.25, when: {kind: bottleneck}}
      hidden: {int: [16, 64], step: 16}
      classes: 10
    constraints:
      - non_decreasing: [w1, w2, w3]
      - "d1 <= d2 + 1"
    train:
      lr: {log: [1.0e-4, 1.0e-2]}
      l2: {float: [0.0, 0.001]}
      schedule: {choice: [constant, cosine]}
      batch: {choice: [32, 64, 128]}
      epochs: 1
    """


def test_every_kind_of_variable_is_sampled_with_its_distribution(tmp_path):
    space = load_space(write(tmp_path, FULL))
    assert [v.name for v in space.variables] == ["w1", "w2", "w3", "d1", "d2", "kind", "ratio",
                                                  "hidden", "lr", "l2", "schedule", "batch"]
    assert space.fixed == {"classes": 10} and space.fixed_train == {"epochs": 1}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_kinds = set()
    for _ in range(40):
        trial = study.ask()
        values, train = space.suggest(trial)
        dist = trial.distributions
        assert isinstance(dist["w1"], optuna.distributions.IntDistribution) and dist["w1"].log
        assert (dist["w1"].low, dist["w1"].high) == (8, 64)
        assert isinstance(dist["lr"], optuna.distributions.FloatDistribution) and dist["lr"].log
        assert isinstance(dist["schedule"], optuna.distributions.CategoricalDistribution)
        assert dist["d2"].step == 1 and dist["hidden"].step == 16
        assert 8 <= values["w2"] <= 64 and values["hidden"] in (16, 32, 48, 64)
        assert train["batch"] in (32, 64, 128) and train["epochs"] == 1
        # the condition: ratio exists only for the bottleneck choice
        assert ("ratio" in values) == (values["kind"] == "bottleneck")
        if "ratio" in values:
            assert values["ratio"] in (0.25, 0.5, 0.75, 1.0)
        seen_kinds.add(values["kind"])
        study.tell(trial, 0.0)
    assert seen_kinds == {"plain", "bottleneck"}


def test_constraints_between_variables(tmp_path):
    space = load_space(write(tmp_path, FULL))
    ok = {"w1": 8, "w2": 16, "w3": 16, "d1": 1, "d2": 1}
    assert space.violations(ok, {}) == []
    assert space.violations({**ok, "w2": 32, "w3": 16}, {}) == ["w2 <= w3"]
    assert space.violations({**ok, "d1": 3, "d2": 1}, {}) == ["d1 <= d2 + 1"]


def test_a_sampled_design_is_an_ordinary_design(tmp_path):
    space = load_space(write(tmp_path, FULL))
    values = {"w1": 8, "w2": 24, "w3": 40, "d1": 2, "d2": 3, "classes": 10}
    design = space.candidate_design(values)
    oracle = archlab.load(tmp_path / "anynet_small.yaml", **values)
    assert design.graph.param_count == oracle.graph.param_count
    assert [n.path for n in design.graph] == [n.path for n in oracle.graph]
    again = archlab.load(design.to_yaml())  # the resolved YAML a trial saves rebuilds it
    assert again.graph.param_count == oracle.graph.param_count


def test_a_design_can_carry_its_own_search_section(tmp_path):
    f = tmp_path / "net.yaml"
    f.write_text(DESIGN + textwrap.dedent("""\
        search:
          variables:
            w1: {choice: [8, 16]}
          train:
            lr: {log: [0.001, 0.01]}
        """))
    space = load_space(f)
    assert space.name == "anynet_small" and [v.name for v in space.variables] == ["w1", "lr"]
    assert "search" not in space.design_raw
    # the design still loads and builds as a design (the section is ignored there)
    assert archlab.load(f).graph.param_count > 0


def test_fingerprint_changes_with_the_space(tmp_path):
    a = load_space(write(tmp_path, FULL))
    b = load_space(write(tmp_path, FULL.replace("[16, 64], step: 16", "[16, 128], step: 16"), "b.yaml"))
    assert a.fingerprint() == load_space(tmp_path / "space.yaml").fingerprint()
    assert a.fingerprint() != b.fingerprint()


BAD = [
    ("variables:\n  hiden: {int: [8, 64]}\n",
     "space.yaml:4 variables.hiden: 'hiden' is not a variable of the design", "did you mean 'hidden'"),
    ("variables:\n  width: {int: [8, 64]}\n", "'width' is not a variable of the design (known: w1, w2",
     "declare it under the design's 'variables:'"),
    ("variables:\n  w1: {int: [64, 8]}\n", "space.yaml:4 variables.w1: range of 'w1' must have "
     "low < high, got [64, 8]", "write [8, 64]"),
    ("variables:\n  w1: {int: [8.5, 64]}\n", "needs whole-number bounds", "use float"),
    ("variables:\n  w1: {log: [0, 1]}\n", "a log range needs low > 0", "start the range above zero"),
    ("variables:\n  w1: {int: [8, 64], step: 8, log: true}\n", "both 'step' and a log scale",
     "drop step or drop log"),
    ("variables:\n  w1: {int: [8, 64], step: 5}\n", "not a whole number of steps of 5",
     "multiple of 5"),
    ("variables:\n  w1: {choice: []}\n", "must be a non-empty list", "choice: [relu, silu]"),
    ("variables:\n  w1: {chioce: [8, 16]}\n", "unknown key 'chioce'", "did you mean 'choice'"),
    ("variables:\n  w1: {int: [8, 16], choice: [8]}\n", "needs exactly one kind", "e.g. w1"),
    ("variables:\n  w1: [8, 16]\n", "'w1' is a list", "write w1: {choice: [8, 16]}"),
    ("variables:\n  ratio: {float: [0.1, 0.5], when: {kind: bottleneck}}\n",
     "'when' refers to 'kind', which is not a choice declared above it", "declare the choice"),
    ("variables:\n  kind: {choice: [plain, bottleneck]}\n  ratio: {float: [0.1, 0.5], when: "
     "{kind: botleneck}}\n", "'when' value 'botleneck' is not one of kind's choices", None),
    ("variables:\n  w1: {int: [8, 64]}\nconstraints:\n  - \"w1 <= hiddn\"\n",
     "space.yaml:6 constraints[0]: constraint 'w1 <= hiddn' uses hiddn", "did you mean 'hidden'"),
    ("variables:\n  w1: {int: [8, 64]}\nconstraints:\n  - \"w1 <=\"\n", "cannot read constraint",
     "w1 <= w2"),
    ("train:\n  weight_decay: {log: [1.0e-5, 1.0e-3]}\n", "'weight_decay' is not a training option",
     "archlab calls it 'l2'"),
    ("variables:\n  w1: {int: [8, 64]}\nconstriants: []\n", "unknown key 'constriants'",
     "did you mean 'constraints'"),
]


@pytest.mark.parametrize(("body", "message", "fix"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_spaces_name_the_line_and_the_fix(tmp_path, body, message, fix):
    f = write(tmp_path, "space: bad\ndesign: anynet_small.yaml\n" + body)
    with pytest.raises(SpaceError) as err:
        load_space(f)
    text = str(err.value)
    assert message in text
    if fix:
        assert fix in text
    assert text.startswith(str(f)) or text.startswith("space.yaml") or str(tmp_path) in text


def test_a_space_without_design_or_search_section(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("variables: {w1: {int: [8, 16]}}\n")
    with pytest.raises(SpaceError, match="a space file needs 'design'"):
        load_space(f)
    (tmp_path / "d.yaml").write_text(DESIGN)
    with pytest.raises(SpaceError, match="has no 'search:' section"):
        load_space(tmp_path / "d.yaml")
    f.write_text("design: no_such_design_anywhere\nvariables: {}\n")
    with pytest.raises(SpaceError, match="neither a file"):
        load_space(f)


# ---- the RegNet width rule ------------------------------------------------------------

def test_regnet_rule_reproduces_published_regnetx_stages():
    # Radosavovic et al. 2020 / pycls configs: (w0, wa, wm, depth, group width) -> widths, depths
    published = {
        "RegNetX-200MF": ((24, 36.44, 2.49, 13, 8), [24, 56, 152, 368], [1, 1, 4, 7]),
        "RegNetX-400MF": ((24, 24.48, 2.54, 22, 16), [32, 64, 160, 384], [1, 2, 7, 12]),
        "RegNetX-600MF": ((48, 36.97, 2.24, 16, 24), [48, 96, 240, 528], [1, 3, 5, 7]),
    }
    for name, (args, widths, depths) in published.items():
        stages = regnet_stages(*args)
        assert [s.width for s in stages] == widths, name
        assert [s.depth for s in stages] == depths, name
        assert all(s.mid % min(args[4], s.mid) == 0 for s in stages)


REGNET = textwrap.dedent("""\
    name: regnet_tiny
    variables: {w0: 8, wa: 8.0, wm: 3.0, depth: 4}
    input: [3, 16, 16]
    width: {policy: regnet, w0: $w0, wa: $wa, wm: $wm, depth: $depth, group_width: 4, stages: 2}
    defaults: {norm: batch, act: relu}
    blocks:
      xblock:   # RegNet's X block: 1x1, grouped 3x3 (the stride), 1x1
        params: {out: 8, mid: 8, groups: 1, stride: 1}
        layers:
          - {block: conv, out: $mid, kernel: 1}
          - {block: conv, kind: grouped, groups: $groups, out: $mid, stride: $stride}
          - {block: conv, out: $out, kernel: 1, act: none}
    layers:
      - {name: stem, block: conv, out: 8, stride: 2}
      - {name: s1, block: xblock, out: $stage1_width, mid: $stage1_mid, groups: $stage1_groups,
         depth: $stage1_depth, stride: 2, residual: true}
      - {name: s2, block: xblock, out: $stage2_width, mid: $stage2_mid, groups: $stage2_groups,
         depth: $stage2_depth, stride: 2, residual: true}
      - {name: head, block: head, classes: 10}
    """)


def test_regnet_width_policy_defines_the_stage_variables():
    d = archlab.load(REGNET)
    stages = regnet_stages(8, 8.0, 3.0, 4, 4)
    assert len(stages) == 2
    s2 = sorted({n.path.split(".")[1] for n in d.graph if n.path.startswith("s2.")})
    assert len(s2) == stages[1].depth
    assert d.graph.node("s2.0.residual").output_shape == (stages[1].width, 2, 2)
    grouped = [n for n in d.graph if n.path.startswith("s2.0") and getattr(n.params, "groups", 1) > 1]
    assert grouped and grouped[0].params.groups == stages[1].groups
    # a family is four numbers: a search sets w0, wa, wm, depth
    wider = archlab.load(REGNET, w0=16)
    assert wider.graph.param_count != d.graph.param_count


def test_regnet_rule_with_another_stage_count_is_an_error():
    with pytest.raises(DesignError) as err:
        archlab.load(REGNET, wm=1.5)
    text = str(err.value)
    n = len(regnet_stages(8, 8.0, 1.5, 4, 4))
    assert n != 2 and "width.stages" in text and f"gives {n} stage(s)" in text and "the design's layers use 2" in text
    assert "change wa or wm" in text
    with pytest.raises(DesignError, match="regnet 'wm' must be a number > 1"):
        archlab.load(REGNET, wm=1.0)
