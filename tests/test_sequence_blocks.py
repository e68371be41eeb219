"""Sequence, attention and variational blocks against PyTorch's own modules and closed forms.

Oracles: ``nn.LSTM``/``nn.GRU``/``nn.TransformerEncoderLayer``/``nn.MultiheadAttention`` with the
same weights (loaded through the state dict, so the parameter layout is PyTorch's), the
LN-LSTM equations of Ba et al. 2016 written out here, ``torch.distributions`` for the KL, and
``FlopCounterMode`` for the multiply-adds.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence
from torch.utils.flop_counter import FlopCounterMode

import archlab
from archlab.blocks import BLOCKS
from archlab.blocks.sequence import sinusoid_table
from archlab.blocks.variational import VariationalBottleneck, kl_loss
from archlab.errors import BlockError, UsageError


def measured_multiply_adds(module: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops() // 2 // x.shape[0]


# ------------------------------------------------------------------------ LSTM / GRU -------


@pytest.mark.parametrize("name, reference", [("lstm", nn.LSTM), ("gru", nn.GRU)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layer_equals_pytorch(name, reference, bidirectional):
    torch.manual_seed(0)
    block = BLOCKS[name]
    shape = (5, 11)
    seq = block.build(block.Params(hidden=7, bidirectional=bidirectional), [shape])
    last = block.build(block.Params(hidden=7, bidirectional=bidirectional, output="last"), [shape])
    last.load_state_dict(seq.state_dict())
    torch_rnn = reference(5, 7, batch_first=True, bidirectional=bidirectional)
    torch_rnn.load_state_dict(seq.state_dict())  # same names, shapes and count as PyTorch
    x = torch.randn(3, *shape)
    out, h_n = torch_rnn(x.transpose(1, 2))
    h_n = h_n[0] if name == "lstm" else h_n
    assert torch.allclose(seq(x), out.transpose(1, 2), atol=1e-5)
    assert torch.allclose(last(x), h_n.transpose(0, 1).reshape(3, -1), atol=1e-5)


@pytest.mark.parametrize("name, gates", [("lstm", 4), ("gru", 3)])
def test_recurrent_counts(name, gates):
    block = BLOCKS[name]
    c, length, h = 6, 9, 10
    for bidirectional in (False, True):
        p = block.Params(hidden=h, bidirectional=bidirectional)
        directions = 2 if bidirectional else 1
        torch_rnn = (nn.LSTM if name == "lstm" else nn.GRU)(c, h, bidirectional=bidirectional)
        assert block.param_count(p, [(c, length)]) == sum(t.numel() for t in torch_rnn.parameters())
        assert block.multiply_adds(p, [(c, length)]) == directions * length * gates * h * (c + h)
        net = block.build(p, [(c, length)])
        assert block.multiply_adds(p, [(c, length)]) == measured_multiply_adds(
            net, torch.randn(2, c, length))


def _ln(x, module):
    return F.layer_norm(x, module.normalized_shape, module.weight, module.bias, module.eps)


def test_layer_norm_lstm_follows_ba_et_al():
    torch.manual_seed(0)
    block = BLOCKS["lstm"]
    net = block.build(block.Params(hidden=4, layer_norm=True), [(3, 6)])
    for module in net.modules():  # non-trivial gains and shifts, so each LN is exercised
        if isinstance(module, nn.LayerNorm):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    x = torch.randn(2, 3, 6)
    h = torch.zeros(2, 4)
    c = torch.zeros(2, 4)
    steps = []
    for t in range(6):
        # gates = LN(W_h h) + LN(W_x x); c = s(f) c + s(i) tanh(g); h = s(o) tanh(LN(c))
        gates = (_ln(x[:, :, t] @ net.weight_ih_l0.T, net.ln_ih_l0)
                 + _ln(h @ net.weight_hh_l0.T, net.ln_hh_l0))
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(_ln(c, net.ln_cell_l0))
        steps.append(h)
    assert torch.allclose(net(x), torch.stack(steps, dim=2), atol=1e-6)
    # 4H(C+H) weights, two LNs over 4H and one over H (gain + shift each), no separate biases
    assert sum(t.numel() for t in net.parameters()) == 16 * 7 + 2 * 2 * 16 + 2 * 4


def test_layer_norm_gru_gradcheck():
    torch.manual_seed(0)
    block = BLOCKS["gru"]
    net = block.build(block.Params(hidden=3, layer_norm=True, bidirectional=True), [(2, 4)])
    net = net.double()
    x = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6)


def test_recurrent_rejects_images():
    block = BLOCKS["lstm"]
    with pytest.raises(BlockError, match=r"block 'lstm' expects a sequence \(C, L\) input, "
                                         r"got shape \(3, 8, 8\)"):
        block.output_shape(block.Params(hidden=4), [(3, 8, 8)])


# ----------------------------------------------------------------------- transformer -------


@pytest.mark.parametrize("position", ["post", "pre"])
def test_transformer_encoder_equals_pytorch(position):
    torch.manual_seed(0)
    block = BLOCKS["transformer_encoder"]
    p = block.Params(heads=4, ffn_ratio=2, dropout=0.0, norm_position=position)
    net = block.build(p, [(16, 9)]).eval()
    reference = nn.TransformerEncoderLayer(16, 4, 32, 0.0, batch_first=True,
                                           norm_first=position == "pre").eval()
    reference.load_state_dict(net.state_dict())
    x = torch.randn(3, 16, 9)
    assert torch.allclose(net(x), reference(x.transpose(1, 2)).transpose(1, 2), atol=1e-5)
    assert block.param_count(p, [(16, 9)]) == sum(t.numel() for t in reference.parameters())


def test_transformer_counts():
    block = BLOCKS["transformer_encoder"]
    p = block.Params(heads=2, ffn_ratio=4)
    c, length, ffn = 8, 6, 32
    expected = 4 * length * c * c + 2 * length * length * c + 2 * length * c * ffn
    assert block.multiply_adds(p, [(c, length)]) == expected
    net = block.build(p, [(c, length)])
    assert measured_multiply_adds(net, torch.randn(2, c, length)) == expected


def test_transformer_heads_must_divide_channels():
    block = BLOCKS["transformer_encoder"]
    with pytest.raises(BlockError) as err:
        block.output_shape(block.Params(heads=3), [(16, 5)])
    assert str(err.value) == ("channels (=16) must be divisible by heads (=3); use heads: 2 or 4 "
                              "(divisors of 16 nearest 3)")


# ------------------------------------------------------------------------ attention -------


def test_self_attention_equals_multihead_attention_plus_input():
    torch.manual_seed(0)
    block = BLOCKS["self_attention"]
    net = block.build(block.Params(heads=2), [(8, 3, 4)])
    reference = nn.MultiheadAttention(8, 2, batch_first=True)
    reference.load_state_dict(net.attention.state_dict())
    x = torch.randn(2, 8, 3, 4)
    tokens = x.flatten(2).transpose(1, 2)
    attended, _ = reference(tokens, tokens, tokens, need_weights=False)
    want = x + attended.transpose(1, 2).reshape(x.shape)
    assert torch.allclose(net(x), want, atol=1e-5)


@pytest.mark.parametrize("params, shape", [({"heads": 4}, (16, 5, 6)),
                                           ({"heads": 2, "inner": 6, "residual": False}, (10, 7))])
def test_self_attention_counts_the_attention(params, shape):
    block = BLOCKS["self_attention"]
    p = block.Params(**params)
    c, positions = shape[0], math.prod(shape[1:])
    inner = p.inner or c
    projections = positions * c * 3 * inner + positions * inner * c
    attention = 2 * positions * positions * inner  # Q K^T and A V
    assert block.multiply_adds(p, [shape]) == projections + attention
    net = block.build(p, [shape])
    assert measured_multiply_adds(net, torch.randn(2, *shape)) == projections + attention


def test_self_attention_heads_error():
    block = BLOCKS["self_attention"]
    with pytest.raises(BlockError, match=r"attention width 'inner' \(=12\) must be divisible by "
                                         r"heads \(=5\); use heads: 4 or 6 \(divisors of 12 "
                                         r"nearest 5\), or inner: 10 or 15 \(multiples of 5 nearest 12\)"):
        block.output_shape(block.Params(heads=5), [(12, 4, 4)])


def test_positional_encoding_table():
    table = sinusoid_table(6, 5)
    pos, i = 3, 1  # channel 2i = sin(pos / 10000^(2i/C)), 2i+1 = cos(...)
    assert math.isclose(table[2 * i, pos].item(), math.sin(pos / 10000 ** (2 * i / 6)),
                        rel_tol=1e-6)
    assert math.isclose(table[2 * i + 1, pos].item(), math.cos(pos / 10000 ** (2 * i / 6)),
                        rel_tol=1e-6)
    odd = sinusoid_table(5, 4)
    assert odd.shape == (5, 4)
    assert torch.allclose(odd[4], torch.sin(torch.arange(4.0) / 10000 ** 0.8), atol=1e-7)


# ---------------------------------------------------------------------- variational -------


def test_variational_kl_matches_torch_distributions():
    torch.manual_seed(0)
    block = BLOCKS["variational"]
    net = block.build(block.Params(latent=3), [(5, 4, 4)])
    x = torch.randn(6, 5, 4, 4)
    z = net(x)
    mean, logvar = net.mean(x), net.log_variance(x)
    kl = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert torch.allclose(net.kl, kl.flatten(1).sum(1).mean(), atol=1e-5)
    assert z.shape == (6, 3, 4, 4)


def test_variational_sample_and_eval_mean():
    torch.manual_seed(0)
    net = VariationalBottleneck(4, 2, rank=1)
    x = torch.randn(1, 4).expand(20000, 4)
    mean = net.mean(x[:1])
    std = torch.exp(0.5 * net.log_variance(x[:1]))
    samples = net(x)
    # reparameterised samples: mean and spread of N(mean, std^2)
    assert torch.allclose(samples.mean(0), mean[0], atol=4 * std.max().item() / math.sqrt(20000))
    assert torch.allclose(samples.std(0), std[0], rtol=0.05)
    net.eval()
    assert torch.equal(net(x[:1]), mean)


def test_kl_loss_sums_beta_weighted_terms_and_has_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(VariationalBottleneck(4, 4, rank=1, beta=1.0),
                          VariationalBottleneck(4, 2, rank=1, beta=3.0))
    x = torch.randn(8, 4)
    model(x)
    total = kl_loss(model)
    assert torch.allclose(total, model[0].kl + 3.0 * model[1].kl)
    total.backward()
    assert model[0].mean.weight.grad is not None


def test_kl_loss_errors():
    with pytest.raises(UsageError) as err:
        kl_loss(nn.Linear(2, 2))
    assert str(err.value) == (
        "kl_loss needs a model with a 'variational' block, received one without; add a "
        "'variational' node (e.g. variational: {latent: 16}) or drop the KL term")
    model = nn.Sequential(VariationalBottleneck(4, 2, rank=1))
    with pytest.raises(UsageError, match="variational bottleneck '0' has no KL term yet"):
        kl_loss(model)


def test_variational_counts():
    block = BLOCKS["variational"]
    for shape in [(32,), (16, 5, 6), (6, 10)]:
        p = block.Params(latent=4)
        net = block.build(p, [shape])
        assert block.param_count(p, [shape]) == sum(t.numel() for t in net.parameters())
        positions = math.prod(shape[1:])
        assert block.multiply_adds(p, [shape]) == 2 * positions * shape[0] * 4
        assert measured_multiply_adds(net, torch.randn(2, *shape)) == 2 * positions * shape[0] * 4


# ------------------------------------------------ analytic records = traced records -------

TRACED = ["self_attention", "lstm", "gru", "transformer_encoder", "positional_encoding",
          "variational"]


@pytest.mark.parametrize("name, i", [(n, i) for n in TRACED
                                     for i in range(len(BLOCKS[n].examples))])
def test_analytic_counts_equal_the_aten_trace(name, i):
    # the design's op records (no tensors) and a meta-device trace of the built module agree on
    # parameters, multiply-adds and element-wise work (inference form)
    from archlab.analysis import analyze

    params, shapes = BLOCKS[name].examples[i]
    design = archlab.load({"input": list(shapes[0]), "layers": [{"block": name, **params}]})
    analytic = analyze(design, memory=False)
    traced = analyze(design, memory=False, method="trace")
    for key in ("params", "multiply_adds", "elementwise"):
        assert analytic.totals[key] == traced.totals[key], key
