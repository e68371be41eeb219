"""Memory of archlab.analyze against real CPU runs: what autograd saves, the profiler's peak, the
budget search, and the promise that the analysed module is left exactly as it was."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.profiler import ProfilerActivity, profile

import archlab
from archlab.analysis import analyze, format_bytes, memory_from_trace, parse_bytes, trace_module
from archlab.analysis.reference import BasicBlock, SmallConvNet
from archlab.build import build  # the function (archlab.build can be the submodule once imported)
from archlab.errors import UsageError
from oracles import autograd_saved_bytes

SMALL_DESIGNS = {
    "residual": {"input": [3, 16, 16], "layers": [
        {"block": "conv", "out": 8, "kernel": 3},
        {"block": "conv", "out": 8, "kernel": 3, "act": "silu"},
        {"block": "conv", "out": 16, "stride": 2, "norm": {"kind": "group", "groups": 4}, "act": "gelu"},
    ]},
}


@pytest.mark.parametrize("name", ["mnist_cnn", "digits_mlp", "resnet_small", "dict"])
def test_saved_activations_equal_what_autograd_saves(name):
    torch.manual_seed(0)
    if name == "resnet_small":
        model, shape = SmallConvNet(), (3, 32, 32)
    elif name == "dict":
        design = archlab.load(SMALL_DESIGNS["residual"])
        model, shape = build(design), tuple(design.graph.input_shape)
    else:
        if name not in archlab.zoo.names():
            pytest.skip(f"{name} not in the zoo")
        design = archlab.load(name)
        model, shape = build(design), tuple(design.graph.input_shape)
    batch = 4
    predicted = analyze(model, shape, batch=batch).memory.saved_activation_bytes
    assert predicted == autograd_saved_bytes(model, torch.randn(batch, *shape))


def test_design_memory_equals_its_built_module():
    design = archlab.load("mnist_cnn") if "mnist_cnn" in archlab.zoo.names() else archlab.load(
        SMALL_DESIGNS["residual"])
    a = analyze(design, batch=8)
    b = analyze(build(design), tuple(design.graph.input_shape), batch=8)
    assert a.memory.to_dict() == b.memory.to_dict()
    assert sum(r.saved_activation_bytes for r in a.nodes) == a.memory.saved_activation_bytes


def _measured_peak_training(model: nn.Module, x: torch.Tensor) -> int:
    """Peak bytes of one Adam training step on the CPU, from the profiler's memory records, plus
    what existed before the step (weights, buffers, optimizer state, the input batch)."""
    opt = torch.optim.Adam(model.parameters())

    def step():
        opt.zero_grad(set_to_none=True)
        model(x).sum().backward()
        opt.step()

    model.train()
    step()  # creates the optimizer state
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    records = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for e in sorted(records, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    params = list(model.parameters())
    before = (sum(p.numel() * p.element_size() for p in params) * 3  # weights + 2 Adam moments
              + 4 * len(params)                                        # Adam's step counters
              + sum(b.numel() * b.element_size() for b in model.buffers())
              + x.numel() * x.element_size())
    return before + peak


@pytest.mark.parametrize("name", ["small_convnet", "mnist_cnn"])
def test_peak_training_memory_within_10_percent_of_the_profiler(name):
    torch.manual_seed(0)
    if name == "small_convnet":
        model, shape, batch = SmallConvNet(width=32), (3, 32, 32), 64
    else:
        if name not in archlab.zoo.names():
            pytest.skip(f"{name} not in the zoo")
        model, shape, batch = build(name), (1, 28, 28), 64
    predicted = analyze(model, shape, batch=batch, optimizer="adam").memory.peak_training_bytes
    measured = _measured_peak_training(model, torch.randn(batch, *shape))
    assert abs(predicted - measured) / measured < 0.10, (format_bytes(predicted), format_bytes(measured))


def test_memory_parts_add_up_and_follow_the_optimizer():
    net = SmallConvNet()
    adam = analyze(net, (3, 32, 32), batch=16, optimizer="adam").memory
    sgd = analyze(net, (3, 32, 32), batch=16, optimizer="sgd").memory
    momentum = analyze(net, (3, 32, 32), batch=16, optimizer="sgd-momentum").memory
    weights = sum(p.numel() * 4 for p in net.parameters())
    assert adam.weights_bytes == sgd.weights_bytes == weights
    assert sgd.optimizer_state_bytes == 0
    assert momentum.optimizer_state_bytes == weights
    assert adam.optimizer_state_bytes == 2 * weights + 4 * len(list(net.parameters()))
    assert adam.peak_training_bytes - sgd.peak_training_bytes == adam.optimizer_state_bytes
    assert sum(adam.peak_training_breakdown.values()) == adam.peak_training_bytes
    assert adam.peak_inference_bytes < adam.peak_training_bytes
    assert adam.input_bytes == 16 * 3 * 32 * 32 * 4


def test_saved_activations_grow_with_the_batch():
    net = SmallConvNet()
    one = analyze(net, (3, 32, 32), batch=1).memory.saved_activation_bytes
    eight = analyze(net, (3, 32, 32), batch=8).memory.saved_activation_bytes
    assert eight == pytest.approx(8 * one, rel=0.01)


def test_largest_batch_and_input_are_the_boundary():
    net = SmallConvNet()
    budget = "24MiB"
    m = analyze(net, (3, 32, 32), batch=4, budget=budget).memory
    limit = parse_bytes(budget)

    def peak(batch, side):
        return memory_from_trace(trace_module(net, (3, side, side), batch, counting=False,
                                              backward=True)).peak_training_bytes

    assert m.budget_bytes == limit
    assert peak(m.largest_batch, 32) <= limit < peak(m.largest_batch + 1, 32)
    assert peak(4, m.largest_input) <= limit < peak(4, m.largest_input + 1)


def test_module_is_left_unchanged():
    torch.manual_seed(0)
    net = SmallConvNet()
    net.block.train()
    net.stem.eval()
    before_state = {k: v.clone() for k, v in net.state_dict().items()}
    before_flags = [m.training for m in net.modules()]
    analyze(net, (3, 32, 32), batch=4, budget="64MiB", latency=True, backward_latency=True, rounds=2)
    after = net.state_dict()
    assert list(after) == list(before_state)
    assert all(torch.equal(after[k], v) for k, v in before_state.items())  # BN stats untouched
    assert [m.training for m in net.modules()] == before_flags
    assert all(p.device.type == "cpu" and p.grad is None for p in net.parameters())
    for m in net.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
    assert not module_hooks._global_forward_hooks and not module_hooks._global_forward_pre_hooks


def test_parse_bytes_and_its_error():
    assert parse_bytes("8GiB") == 8 * 2**30
    assert parse_bytes("512MB") == 512 * 10**6
    assert parse_bytes("1.5G") == 1_500_000_000
    with pytest.raises(UsageError, match=r"cannot read the memory size '8 gigs'.*write --budget 8GiB"):
        parse_bytes("8 gigs")


def test_block_level_memory_rows_for_a_module():
    a = analyze(nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 16, 2)), (8, 16, 16), batch=2)
    # the input batch, saved by the first convolution, has a row of its own
    assert [r.path for r in a.nodes] == ["(input)", "0", "1"]
    assert a.nodes[0].saved_activation_bytes == 2 * 8 * 16 * 16 * 4
    assert all(r.saved_activation_bytes > 0 for r in a.nodes)
    assert a.nodes[2].output_shape == (16, 8, 8)
    assert sum(r.saved_activation_bytes for r in a.nodes) == a.memory.saved_activation_bytes


@pytest.mark.parametrize("shape,channels_last", [((2, 8, 5, 5), False), ((2, 8, 5, 5), True),
                                                 ((3, 6, 7), False), ((4, 5), False),
                                                 ((2, 4, 3, 3, 3), False)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mask", [[True, True, True], [True, False, False], [False, True, True]])
def test_batch_norm_shape_rules_equal_pytorch_meta_kernels(shape, channels_last, training, mask):
    """The tracer's fast batch-norm shape rules against PyTorch's own meta kernels (the oracle)."""
    from archlab.analysis.meta_kernels import SHAPE_RULES as _SHAPE_RULES

    aten = torch.ops.aten
    x = torch.empty(shape, device="meta")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    c = shape[1]
    w, b, rm, rv = (torch.empty(c, device="meta") for _ in range(4))

    def spec(out):
        return [None if t is None else (tuple(t.shape), t.stride(), t.dtype) for t in out]

    fwd = aten.native_batch_norm.default
    assert spec(_SHAPE_RULES[fwd](x, w, b, rm, rv, training, 0.1, 1e-5)) == \
        spec(fwd(x, w, b, rm, rv, training, 0.1, 1e-5))
    saved = fwd(x, w, b, rm, rv, training, 0.1, 1e-5)
    bwd = aten.native_batch_norm_backward.default
    args = (x, x, w, rm, rv, saved[1], saved[2], training, 1e-5, mask)
    assert spec(_SHAPE_RULES[bwd](*args)) == spec(bwd(*args))


@pytest.mark.parametrize("case", [((2, 8, 5, 5), [2, 3], True), ((2, 8, 5, 5), [-1, -2], False),
                                  ((3, 4), [1], False), ((3, 4), None, False), ((2, 3, 4), [0], True)])
def test_mean_shape_rule_equals_pytorch_meta_kernel(case):
    from archlab.analysis.meta_kernels import SHAPE_RULES

    shape, dim, keepdim = case
    x = torch.empty(shape, device="meta")
    mean = torch.ops.aten.mean.dim
    ours, theirs = SHAPE_RULES[mean](x, dim, keepdim), mean(x, dim, keepdim)
    assert (tuple(ours.shape), ours.stride(), ours.dtype) == (tuple(theirs.shape), theirs.stride(), theirs.dtype)


@pytest.mark.parametrize("shapes", [((2, 8), (8, 5), (5,)), ((1, 3), (3, 4), (1, 4)), ((7, 2), (2, 9), (7, 9))])
def test_addmm_shape_rule_equals_pytorch_meta_kernel(shapes):
    from archlab.analysis.meta_kernels import SHAPE_RULES

    a, b, bias = (torch.empty(s, device="meta") for s in shapes)
    addmm = torch.ops.aten.addmm.default
    ours, theirs = SHAPE_RULES[addmm](bias, a, b), addmm(bias, a, b)
    assert (tuple(ours.shape), ours.stride(), ours.dtype) == (tuple(theirs.shape), theirs.stride(), theirs.dtype)
