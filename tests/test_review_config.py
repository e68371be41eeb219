"""Review settings (design `review:` section, pyproject, API), and the `archlab review` command:
table, --json, --sarif, --fail-on exit codes, FILE.py:FACTORY modules, error messages."""

from __future__ import annotations

import json
import textwrap

import pytest

from archlab.cli import main
from archlab.errors import UsageError
from archlab.review import RULES, load_pyproject, parse_config, review, run_review

NARROW = textwrap.dedent("""\
    name: narrow
    input: [16, 16, 16]
    layers:
      - {name: squeeze, block: conv, out: 4}
      - {name: expand, block: conv, out: 16}
    """)


def test_design_review_section_disables_with_reason(tmp_path):
    text = NARROW + textwrap.dedent("""\
        review:
          disable:
            narrow-relu: "the squeeze is meant to be narrow"
        """)
    result = run_review(text)
    assert not [f for f in result.findings if f.rule == "narrow-relu"]
    assert result.disabled == {"narrow-relu": "the squeeze is meant to be narrow"}
    assert "narrow-relu" not in result.rules_run


def test_suppress_one_node_keeps_the_reason():
    config = {"suppress": [{"rule": "narrow-relu", "node": "squeeze", "reason": "tested"}]}
    result = run_review(NARROW, config=config)
    assert not [f for f in result.findings if f.rule == "narrow-relu"]
    [(finding, reason)] = result.suppressed
    assert finding.node == "squeeze" and reason == "tested"
    # a suppression names one node: another node's finding stays
    other = {"suppress": [{"rule": "narrow-relu", "node": "expand", "reason": "x"}]}
    assert [f.rule for f in review(NARROW, config=other)] == ["narrow-relu"]


def test_thresholds_from_pyproject_and_design_layering(tmp_path):
    project = tmp_path / "pyproject.toml"
    project.write_text(textwrap.dedent("""\
        [tool.archlab.review.thresholds.narrow-relu]
        max_channels = 2
        """))
    settings = load_pyproject(project)
    assert settings.thresholds_for("narrow-relu") == {"max_channels": 2}
    assert not run_review(NARROW, project_config=settings).findings
    # the design's own section wins over the project's
    text = NARROW + "review: {thresholds: {narrow-relu: {max_channels: 8}}}\n"
    assert [f.rule for f in run_review(text, project_config=settings).findings] == ["narrow-relu"]


def test_pyproject_without_section_is_empty(tmp_path):
    project = tmp_path / "pyproject.toml"
    project.write_text("[project]\nname = 'x'\n")
    assert load_pyproject(project) == parse_config(None)


@pytest.mark.parametrize("config, message", [
    ({"disable": {"narrow-relu": ""}},
     "review.disable: rule 'narrow-relu' is disabled without a reason; write disable: "
     "{narrow-relu: \"why it does not apply\"}"),
    ({"disable": {"narrow-rleu": "x"}},
     "review.disable: unknown review rule 'narrow-rleu'; valid review rules: "
     + ", ".join(sorted(RULES)) + "; did you mean 'narrow-relu'?"),
    ({"thresholds": {"narrow-relu": {"max_channel": 4}}},
     "review.thresholds: rule 'narrow-relu' has no threshold 'max_channel'; its thresholds: "
     "max_channels"),
    ({"thresholds": {"narrow-relu": {"max_channels": "four"}}},
     "review.thresholds: threshold narrow-relu.max_channels must be a int like 8, got 'four'"),
    ({"loss": "cross_entropyy"},
     "review.loss: unknown loss 'cross_entropyy'; valid losses: cross_entropy, nll, bce, "
     "bce_with_logits, mse, l1, none; did you mean 'cross_entropy'?"),
    ({"suppres": []},
     "review.suppres: unknown key 'suppres'; valid keys: loss, thresholds, disable, suppress"),
    ({"suppress": [{"rule": "narrow-relu", "node": "squeeze"}]},
     "review.suppress.0.reason: Field required"),
])
def test_config_errors_say_where_what_and_fix(config, message):
    with pytest.raises(UsageError) as err:
        parse_config(config)
    assert str(err.value) == message


def test_design_file_config_error_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(NARROW + "review: {disable: {narrow-relu: ''}}\n")
    with pytest.raises(UsageError) as err:
        review(str(path))
    assert str(err.value).startswith(f"{path} review.disable: rule 'narrow-relu' is disabled "
                                     "without a reason")


# ------------------------------------------------------------------------------ the CLI ----


def test_cli_table_and_fail_on(capsys):
    assert main(["review", "vgg19", "--no-project-config"]) == 0          # default: error
    out = capsys.readouterr().out
    assert "deep-plain-stack" in out and "no-normalisation" in out
    assert "0 error, 2 warning, 0 info; 0 suppressed" in out
    assert main(["review", "vgg19", "--fail-on", "warning", "--no-project-config"]) == 1
    assert "2 finding(s) at or above 'warning'" in capsys.readouterr().err


def test_cli_json_schema(capsys, tmp_path):
    path = tmp_path / "narrow.yaml"
    path.write_text(NARROW)
    assert main(["review", str(path), "--json", "--no-project-config"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["schema"] == "archlab.review/1"
    assert data["name"] == "narrow" and data["input"] == [16, 16, 16]
    assert data["counts"] == {"info": 0, "warning": 1, "error": 0}
    [finding] = data["findings"]
    assert finding["rule"] == "narrow-relu" and finding["node"] == "squeeze"
    assert finding["source"] == str(path) and finding["line"] == 4
    assert finding["evidence"]["channels"] == 4
    assert set(finding) == {"rule", "severity", "node", "message", "fix", "guideline",
                            "evidence", "source", "line"}


def test_cli_sarif(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "narrow.yaml").write_text(NARROW + textwrap.dedent("""\
        review:
          suppress: [{rule: narrow-relu, node: squeeze, reason: "by design"}]
        """))
    (tmp_path / "wide.yaml").write_text(NARROW.replace("out: 4", "out: 4, bias: true"))
    assert main(["review", "wide.yaml", "--sarif", "--fail-on", "warning"]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0"
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    by_rule = {r["ruleId"]: r for r in run["results"]}
    bias = by_rule["bias-before-norm"]
    assert bias["level"] == "warning"
    assert rules[bias["ruleIndex"]]["id"] == "bias-before-norm"
    location = bias["locations"][0]
    assert location["physicalLocation"] == {"artifactLocation": {"uri": "wide.yaml"},
                                            "region": {"startLine": 4}}
    assert location["logicalLocations"][0]["fullyQualifiedName"] == "squeeze"
    assert main(["review", "narrow.yaml", "--sarif", "--fail-on", "warning"]) == 0
    [hushed] = json.loads(capsys.readouterr().out)["runs"][0]["results"]
    assert hushed["suppressions"] == [{"kind": "external", "justification": "by design"}]


MODEL_PY = textwrap.dedent("""\
    from torch import nn

    def make():
        layers = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
        for _ in range(11):
            layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
        return nn.Sequential(*layers)
    """)


def test_cli_reviews_a_python_module(capsys, tmp_path):
    (tmp_path / "model.py").write_text(MODEL_PY)
    spec = f"{tmp_path / 'model.py'}:make"
    assert main(["review", spec, "--input", "3x32x32", "--json", "--no-project-config"]) == 0
    rules = {f["rule"] for f in json.loads(capsys.readouterr().out)["findings"]}
    # conv + separate ReLU, unfused: the ReLUs are 48% of the memory access
    assert rules == {"deep-plain-stack", "no-normalisation", "elementwise-cost"}
    assert main(["review", spec, "--no-project-config"]) == 2
    assert capsys.readouterr().err == ("error: reviewing a Sequential needs the input shape; "
                                       "pass input_shape=(3, 224, 224) or --input 3x224x224\n")
    assert main(["review", spec, "--input", "3xbig"]) == 2
    assert "--input takes positive sizes joined by 'x'" in capsys.readouterr().err
    assert main(["review", f"{tmp_path / 'model.py'}:nothing", "--input", "3x8x8"]) == 2
    assert "has no 'nothing'; callables in it: make" in capsys.readouterr().err


def test_cli_wrong_input_channels_is_a_usage_error(capsys, tmp_path):
    (tmp_path / "model.py").write_text(MODEL_PY)
    assert main(["review", f"{tmp_path / 'model.py'}:make", "--input", "1x8x8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: could not run the module on a meta tensor of shape (1, 1, 8, 8)")
    assert "Traceback" not in err


def test_cli_lists_rules(capsys):
    assert main(["review", "--rules", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in data["rules"]] == list(RULES)
    assert main(["review"]) == 2
    assert "review needs a DESIGN or FILE.py:FACTORY" in capsys.readouterr().err
