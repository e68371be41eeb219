"""The bugs the outside test (benchmarks/outside_models.py: torchvision and timm models) found,
each reproduced by a small hand-written module with the same mechanism, against an oracle:
PyTorch's FLOP counter, sum(numel), what autograd really saves (saved_tensors_hooks), and the
profiler's allocation events of a real CPU training step. Each test failed before its fix."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archlab.analysis import analyze
from archlab.analysis.command import render
from oracles import autograd_saved_bytes
from test_analysis_memory import _measured_peak_training


def _pytorch_multiply_adds(module: nn.Module, shape) -> int:
    """PyTorch's own counter on a real CPU forward at batch 1 (2 FLOPs per multiply-add)."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module.eval()(torch.randn(1, *shape))
    return counter.get_total_flops() // 2


class PatchConv(nn.Module):
    """TNT/MViT-like: the batch axis folded with the patches, (B*16, C, 4, 4), into a conv."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        b, c = x.shape[:2]
        p = x.reshape(b, c, 4, 4, 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(b * 16, c, 4, 4)
        return self.conv(p).reshape(b, 16, 8, 4, 4).mean(1)


def test_folded_batch_axis_conv_takes_its_channels_from_the_weight():
    net = PatchConv()
    a = analyze(net, (4, 16, 16), memory=False)
    assert a.totals["multiply_adds"] == _pytorch_multiply_adds(net, (4, 16, 16)) == 16 * 8 * 4 * 9 * 16
    assert a.totals["params"] == a.totals["params_in_ops"] == sum(p.numel() for p in net.parameters())


class FourierPositions(nn.Module):
    """EdgeNeXt-like: a positional encoding made for every sample inside the forward (on the
    CPU, no device given), projected by a conv: its leading axis is the batch, not channels."""

    def __init__(self, once: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(8, 6, 1)
        self.once = once

    def forward(self, x):
        b, _, h, w = x.shape
        mask = torch.ones(1 if self.once else b, h, w)
        ys, xs = mask.cumsum(1), mask.cumsum(2)
        dim = torch.arange(4, dtype=torch.float32) + 1
        pos = torch.cat([(ys[..., None] / dim).sin(), (xs[..., None] / dim).cos()], dim=3)
        pos = self.proj(pos.permute(0, 3, 1, 2).to(x.device))
        if self.once:  # XCiT: computed once, repeated over the batch
            pos = pos.repeat(b, 1, 1, 1)
        return x + pos


def test_positional_encoding_conv_recomputed_per_sample_counts_per_sample():
    net = FourierPositions()
    a = analyze(net, (6, 8, 8), memory=False)
    assert a.totals["multiply_adds"] == _pytorch_multiply_adds(net, (6, 8, 8)) == 8 * 6 * 64
    assert a.totals["weights_only_multiply_adds"] == 0  # recomputed per sample: not a constant
    assert a.totals["params_in_ops"] == a.totals["params"]


def test_work_done_once_per_batch_is_the_named_weights_only_convention(capsys):
    net = FourierPositions(once=True)
    a = analyze(net, (6, 8, 8), memory=False)
    conv = 8 * 6 * 64
    assert a.totals["weights_only_multiply_adds"] == conv
    assert a.totals["multiply_adds"] + a.totals["weights_only_multiply_adds"] == \
        _pytorch_multiply_adds(net, (6, 8, 8))
    assert "once per batch" in json.loads(a.to_json())["conventions"]["weights_only"]
    render(a)
    assert "weights-only" in capsys.readouterr().out


def test_batch_norm_after_a_global_pool_trains_at_batch_one():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(8),
                        nn.Flatten(), nn.Linear(8, 4))
    a = analyze(net, (3, 16, 16))  # the defaults: memory traced in training mode at batch 1
    assert any("one value per channel" in n and "batch of 2 or more" in n for n in a.notes)
    assert a.notes == json.loads(a.to_json())["notes"]
    two = analyze(net, (3, 16, 16), batch=2).memory.saved_activation_bytes
    assert two == autograd_saved_bytes(net, torch.randn(2, 3, 16, 16))  # the smallest batch that trains
    # per-sample tensors double from batch 1 to 2; batch norm's saved mean and inverse std
    # (8 channels x 2 x 4 bytes) do not
    assert 2 * a.memory.saved_activation_bytes - two == 8 * 2 * 4


class RelativeIndices(nn.Module):
    """ConViT-like: constants made on the CPU with factory calls in every forward, moved to the
    network's device, expanded over the batch and projected."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 2)

    def forward(self, x):
        n, side = x.shape[1], 4
        rel = torch.zeros(1, n, n, 3)
        ind = torch.arange(side).view(1, -1) - torch.arange(side).view(-1, 1)
        indx = ind.repeat(side, side)
        indy = ind.repeat_interleave(side, 0).repeat_interleave(side, 1)
        rel[:, :, :, 2] = (indx ** 2 + indy ** 2).unsqueeze(0)
        rel[:, :, :, 1] = indy.unsqueeze(0)
        rel[:, :, :, 0] = indx.unsqueeze(0)
        pos = self.proj(rel.to(x.device).expand(x.shape[0], -1, -1, -1))
        return x @ x.transpose(1, 2) + pos.sum(-1)


def test_factory_calls_do_not_leak_between_analyses():
    net = RelativeIndices()
    first = analyze(net, (16, 8))
    second = analyze(net, (16, 8))
    assert first.to_dict() == second.to_dict()  # nothing depends on what ran before
    assert first.totals["multiply_adds"] == _pytorch_multiply_adds(net, (16, 8))
    assert first.memory.saved_activation_bytes == autograd_saved_bytes(net, torch.randn(1, 16, 8))


class Attention(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 4, mha: bool = False) -> None:
        super().__init__()
        self.heads, self.mha = heads, mha
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True) if mha else None

    def forward(self, x):
        if self.mha:
            return self.attn(x, x, x, need_weights=False)[0]
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c)


@pytest.mark.parametrize("mha", [False, True], ids=["sdpa", "multihead_attention"])
def test_attention_memory_follows_the_backend_the_cpu_runs(mha):
    torch.manual_seed(0)
    net, shape, batch = Attention(mha=mha), (64, 32), 4
    m = analyze(net, shape, batch=batch).memory
    assert m.saved_activation_bytes == autograd_saved_bytes(net, torch.randn(batch, *shape))
    assert any(k.startswith("flash (cpu") for k in m.attention_backends)


def test_dilated_convolution_backward_scratch_is_in_the_peak():
    """DeepLabv3's ASPP: a dilated kernel that spans the input sends oneDNN's backward to an
    im2col GEMM with a large column buffer."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(8, 128, 1), nn.Conv2d(128, 64, 3, padding=12, dilation=12),
                        nn.ReLU())
    x = torch.randn(2, 8, 16, 16)
    predicted = analyze(net, (8, 16, 16), batch=2).memory.peak_training_bytes
    measured = _measured_peak_training(net, x)
    assert abs(predicted - measured) / measured < 0.05


class Views(nn.Module):
    def forward(self, x):
        a = x.as_strided((x.shape[0], 4, 8), (x.shape[1] * x.shape[2], 8, 1))
        b, c = torch.unsafe_split(x, 4, dim=1)
        d = torch.unsafe_chunk(x, 2, dim=2)[0]
        return a.sum() + b.sum() + c.sum() + d.sum()


def test_views_are_not_work():
    a = analyze(Views(), (8, 8), memory=False)
    assert [op.kind for op in a.ops] == ["sum", "sum", "add", "sum", "add", "sum", "add"]
    assert a.totals["elementwise"] == 4 * 32 + 3  # the sums read 32 elements each; three adds


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU PyTorch's own choice is asked")
def test_cuda_attention_backend_is_a_stated_model_without_a_gpu():
    fp32 = analyze(Attention(), (64, 32), batch=2, device="cuda").memory
    assert fp32.attention_backends == {"efficient (cuda, modelled (no GPU here))": 1}
    half = analyze(Attention().half(), (64, 32), batch=2, device="cuda", dtype=torch.float16).memory
    assert half.attention_backends == {"flash (cuda, modelled (no GPU here))": 1}
    # flash saves no more than q, k, v, the output and a log-sum-exp per row
    assert half.saved_activation_bytes < fp32.saved_activation_bytes


class BiasedAttention(Attention):
    """MaxViT/CoAtNet-like: a learned relative-position bias passed as the attention mask."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, self.heads, 64, 64))

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=self.bias).transpose(1, 2).reshape(b, n, c)


def test_a_learned_attention_mask_keeps_the_cpu_off_flash_attention():
    torch.manual_seed(0)
    net = BiasedAttention()
    m = analyze(net, (64, 32), batch=2).memory  # flash cannot give the mask a gradient
    assert m.attention_backends == {"math (cpu, PyTorch's own choice)": 1}
    assert m.saved_activation_bytes == autograd_saved_bytes(net, torch.randn(2, 64, 32))
