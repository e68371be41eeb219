"""A node name that an attribute of the built module already has ('code', 'forward',
'training', 'to') is refused with the fix, at the top level and inside groups; the oracle is
torch.fx.GraphModule's own attribute list and a real build of a legal name."""

from __future__ import annotations

import pytest
import torch
from torch import fx

import archlab


@pytest.mark.parametrize("name", ["code", "forward", "training", "to", "graph"])
def test_module_attribute_names_are_refused(name):
    assert hasattr(fx.GraphModule(torch.nn.Module(), fx.Graph()), name)
    with pytest.raises(archlab.DesignError) as err:
        archlab.load({"input": [4], "layers": [{"name": name, "block": "linear", "out": 2}]})
    text = str(err.value)
    assert f"node name '{name}' is taken by an attribute of the built module" in text
    assert f"rename the node, e.g. '{name}_net'" in text


def test_inside_a_group_too():
    with pytest.raises(archlab.DesignError, match="node name 'eval' is taken"):
        archlab.load({"input": [4], "layers": [
            {"name": "enc", "layers": [{"name": "eval", "block": "linear", "out": 2}]}]})


def test_the_suggested_name_builds():
    net = archlab.build({"input": [4], "layers": [{"name": "code_net", "block": "linear", "out": 2}]})
    assert net(torch.zeros(1, 4)).shape == (1, 2)
    assert isinstance(net.code, str)  # the generated source is still the module's own
