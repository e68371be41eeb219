"""Foreign state dicts into designs: the oracles are hand-written networks with torchvision's
module names (archlab.analysis.reference, and small ones written here); their state dicts are
saved as torchvision's and timm's files are (.pth of the state dict, or safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import archlab
from archlab.analysis import reference
from archlab.build import build, load_built
from archlab.export.weights import WeightsImportError, import_weights, match_state
from archlab.train.checkpoint import read_weights

SMALL_RESNET = {"width": 16, "size": 32, "classes": 10}


def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics, so a norm loaded into the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return module.eval()


def _same_outputs(model, ref, shape) -> None:
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), ref.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.fixture
def resnet_file(tmp_path) -> tuple[Path, nn.Module]:
    torch.manual_seed(0)
    ref = _randomise(reference.ResNet(reference.BasicBlock, [2, 2, 2, 2], 10, 16), 0)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    return path, ref


def test_resnet_torchvision_names_load_by_name_rule_and_order(resnet_file):
    path, ref = resnet_file
    model, report = import_weights("resnet18", path, **SMALL_RESNET)
    assert report.complete and not report.unused
    # inside the residual blocks the names are torchvision's; the stem conv block and the head
    # differ: conv1.weight -> conv1.0.weight and fc.* -> fc.fc.* by rule, bn1.* by module order
    by = {m.design: (m.how, m.file) for m in report.matches}
    assert by["layer2.0.downsample.0.weight"] == ("name", "layer2.0.downsample.0.weight")
    assert by["conv1.0.weight"] == ("rule", "conv1.weight")
    assert by["fc.fc.weight"] == ("rule", "fc.weight")
    assert by["conv1.1.running_var"] == ("order", "bn1.running_var")
    assert report.counts() == {"name": 114, "rule": 3, "order": 5}
    _same_outputs(model, ref, (3, 32, 32))


def test_mobilenet_v2_loads_by_module_order(tmp_path):
    torch.manual_seed(0)
    ref = _randomise(reference.mobilenet_v2(10), 1)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(ref.state_dict(), path)
    model, report = import_weights("mobilenet_v2", path, size=32, classes=10)
    assert report.complete and report.counts() == {"order": len(ref.state_dict())}
    first = report.matches[0]
    assert (first.file, first.design) == ("features.0.0.weight", "stem.0.weight")
    _same_outputs(model, ref, (3, 32, 32))


def test_safetensors_file_keys_sorted_still_match(resnet_file, tmp_path):
    path, ref = resnet_file
    st = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(st))
    model, report = import_weights("resnet18", st, **SMALL_RESNET)
    assert report.complete
    _same_outputs(model, ref, (3, 32, 32))


def test_head_for_other_classes_is_refused_then_loaded_partially(tmp_path):
    torch.manual_seed(0)
    ref = _randomise(reference.ResNet(reference.BasicBlock, [2, 2, 2, 2], 1000, 16), 2)
    path = tmp_path / "imagenet.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(WeightsImportError) as err:
        import_weights("resnet18", path, **SMALL_RESNET)
    text = str(err.value)
    assert "2 tensor(s) differ in shape" in text
    assert "file fc.weight (1000, 128) vs design fc.fc.weight (10, 128)" in text
    assert "nothing was loaded" in text and "--partial" in text and "--set classes=N" in text

    torch.manual_seed(5)
    fresh = build(archlab.load("resnet18", **SMALL_RESNET))
    torch.manual_seed(5)
    model, report = import_weights("resnet18", path, partial=True, **SMALL_RESNET)
    assert [(m[0], m[2]) for m in report.mismatched] == [("fc.bias", "fc.fc.bias"),
                                                         ("fc.weight", "fc.fc.weight")]
    # the backbone is the file's, the head keeps the design's own initialisation
    assert torch.equal(model.get_submodule("layer4.1.conv2").weight, ref.layer4[1].conv2.weight)
    assert torch.equal(model.fc.fc.weight, fresh.fc.fc.weight)


def _mlp(widths: list[int]) -> dict:
    return {"name": "mlp", "input": [8],
            "layers": [{"name": f"fc{i}", "block": "linear", "out": w} for i, w in enumerate(widths)]}


def test_ambiguous_match_is_refused_not_guessed(tmp_path):
    # the file has three 8->8 layers, the design two: which two? archlab does not guess
    ref = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    path = tmp_path / "three.pth"
    torch.save(ref.state_dict(), path)
    with pytest.raises(WeightsImportError, match=r"1 group\(s\) of same-shaped modules cannot be "
                                                 r"paired with certainty \(file \['0', '1', '2'\]"):
        import_weights(_mlp([8, 8, 4]), path)
    model, report = import_weights(_mlp([8, 8, 4]), path, partial=True)
    assert [(m.design, m.file) for m in report.matches] == [("fc2.weight", "3.weight"),
                                                            ("fc2.bias", "3.bias")]
    assert report.ambiguous and {"fc0", "fc1"} <= {d.split(".")[0] for d, _ in report.unfilled}


def test_reshaped_linear_stored_as_1x1_conv(tmp_path):
    conv = nn.Conv2d(8, 4, 1)
    path = tmp_path / "conv_head.pth"
    torch.save(conv.state_dict(), path)
    model, report = import_weights(_mlp([4]), path)
    assert [(m.how, m.file_shape, m.design_shape) for m in report.matches] == [
        ("reshaped", (4, 8, 1, 1), (4, 8)), ("order", (4,), (4,))]
    x = torch.randn(3, 8)
    torch.testing.assert_close(model(x), conv(x[:, :, None, None]).flatten(1))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(nn.Linear(2, 2), path)  # a whole module: loading it would run pickle code
    with pytest.raises(WeightsImportError, match=r"cannot read the file with "
                                                 r"torch.load\(weights_only=True\).*save the state dict"):
        import_weights(_mlp([2]), path)
    torch.save({"epoch": 3, "note": "no tensors"}, path)
    with pytest.raises(WeightsImportError, match="the file holds no tensors"):
        import_weights(_mlp([2]), path)


def test_unrelated_file_says_nothing_fits(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(nn.Conv2d(3, 5, 3).state_dict(), path)
    with pytest.raises(WeightsImportError, match="no tensor of the file fits the design 'mlp'"):
        import_weights(_mlp([8, 4]), path)


def test_match_state_reports_every_tensor():
    design = {"a.0.weight": torch.zeros(4, 3), "a.0.bias": torch.zeros(4), "b.weight": torch.zeros(2, 4)}
    file = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(4), "head.weight": torch.zeros(9, 4),
            "extra.scale": torch.zeros(7)}
    report = match_state(design, file)
    assert {(m.design, m.how) for m in report.matches} == {("a.0.weight", "rule"), ("a.0.bias", "rule")}
    assert report.mismatched == [("head.weight", (9, 4), "b.weight", (2, 4))]
    assert report.unused == [("extra.scale", (7,))] and not report.unfilled


def _cli(capsys, *args) -> tuple[int, str, str]:
    from archlab.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_import_check_and_built_folder(resnet_file, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, ref = resnet_file
    (tmp_path / "ref.py").write_text(
        "from archlab.analysis.reference import BasicBlock, ResNet\n"
        "def small():\n    return ResNet(BasicBlock, [2, 2, 2, 2], 10, 16)\n"
        "def wrong():\n    return ResNet(BasicBlock, [2, 2, 2, 2], 10, 32)\n")
    sets = [a for k, v in SMALL_RESNET.items() for a in ("--set", f"{k}={v}")]
    code, out, err = _cli(capsys, "weights", "import", "resnet18", str(path), *sets, "--check",
                          "ref.py:small", "-o", "r18")
    assert code == 0, err
    assert "122 tensors loaded (114 by name, 3 by rule, 5 by module order)" in out
    assert "  rule      conv1.0.weight" in out and "<- conv1.weight  (16, 3, 7, 7)" in out
    assert "check: outputs agree with ref.py:small" in out
    built = load_built(tmp_path / "r18")
    _same_outputs(built, ref, (3, 32, 32))
    assert (tmp_path / "r18" / "import-report.json").exists()

    code, _, err = _cli(capsys, "weights", "import", "resnet18", str(path), *sets, "--check",
                        "ref.py:wrong")
    assert code == 2 and "does not load into the reference from 'ref.py:wrong'" in err
    assert "size mismatch for conv1.weight" in err
    code, _, err = _cli(capsys, "weights", "import", "resnet18", str(path), *sets, "--check", "ref.py")
    assert code == 2 and "--check expects FILE.py:FACTORY, received 'ref.py'" in err


def test_init_from_foreign_file_then_freeze_the_backbone(tmp_path):
    """Recipe 1 of the docs: a pre-trained backbone with other names, frozen; the head retrained."""
    design = {"name": "tiny", "task": "classification", "input": [1, 8, 8],
              "defaults": {"norm": "batch", "act": "relu"},
              "layers": [{"name": "stem", "block": "conv", "out": 8},
                         {"name": "body", "block": "conv", "out": 8, "stride": 2},
                         {"name": "head", "block": "head", "classes": 10}]}
    # a hand-written network with its own names (features.*, classifier.*), trained elsewhere
    ref = nn.Sequential()
    ref.add_module("features", nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                                             nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1, bias=False),
                                             nn.BatchNorm2d(8), nn.ReLU()))
    ref.add_module("classifier", nn.Linear(8, 10))
    torch.manual_seed(3)
    _randomise(ref, 3)
    path = tmp_path / "pretrained.pth"
    torch.save(ref.state_dict(), path)
    run = archlab.train(design, "digits", epochs=1, batch=64, init_from=str(path),
                        freeze=["stem", "body"], out=str(tmp_path / "runs"), progress=False, health=False)
    trained = read_weights(run.path)
    assert torch.equal(trained["stem.0.weight"], ref.features[0].weight)
    assert torch.equal(trained["body.1.running_var"], ref.features[4].running_var)  # frozen norms too
    assert not torch.equal(trained["head.fc.weight"], ref.classifier.weight)      # retrained
    assert run.summary["transfer"]["frozen_tensors"] == 6


def test_vision_transformer_with_torchvision_layout(tmp_path):
    """A transformer-era network: patch conv, class token and positions kept in one container
    (as torchvision's ViT), PyTorch's fused attention weights (in_proj_weight)."""
    torch.manual_seed(0)
    ref = reference.VisionTransformer(32, 8, 96, 2, 4, 384, 10, fused=True).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(std=0.1)
    path = tmp_path / "vit.pth"
    torch.save(ref.state_dict(), path)
    model, report = import_weights("vit_b_16", path, size=32, patch=8, width=96, heads=4, depth=2,
                                   classes=10)
    assert report.complete and not report.unused
    by = {m.design: m.file for m in report.matches}
    assert by["class_token.value"] == "embeddings.class_token"
    assert by["position.value"] == "embeddings.pos_embedding"
    assert by["encoder.1.self_attention.in_proj_weight"] == "layers.1.self_attention.in_proj_weight"
    _same_outputs(model, ref, (3, 32, 32))


def test_doctests():
    import doctest

    from archlab.export import weights

    result = doctest.testmod(weights, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


class _TimmAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class _TimmBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _TimmAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.act, self.mlp.fc2 = nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp.fc2(self.mlp.act(self.mlp.fc1(self.norm2(x))))


class _TimmViT(nn.Module):
    """A ViT with timm's names: parameters of the network itself (cls_token, pos_embed) come
    first in its state dict, the fused attention projection is `attn.qkv`."""

    def __init__(self, size=32, patch=8, dim=96, depth=2, heads=4, classes=10) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (size // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(*[_TimmBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.blocks(x))[:, 0])


def test_vision_transformer_with_timm_names(tmp_path):
    torch.manual_seed(0)
    ref = _TimmViT().eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(std=0.1)
    assert list(ref.state_dict())[:3] == ["cls_token", "pos_embed", "patch_embed.proj.weight"]
    path = tmp_path / "vit_timm.pth"
    torch.save(ref.state_dict(), path)
    model, report = import_weights("vit_b_16", path, size=32, patch=8, width=96, heads=4, depth=2,
                                   classes=10)
    assert report.complete and not report.unused
    by = {m.design: m.file for m in report.matches}
    assert by["encoder.0.self_attention.in_proj_weight"] == "blocks.0.attn.qkv.weight"
    assert by["encoder.1.mlp.3.weight"] == "blocks.1.mlp.fc2.weight"
    assert by["class_token.value"] == "cls_token"
    _same_outputs(model, ref, (3, 32, 32))


def test_only_foreign_files_are_renamed_for_init_from(resnet_file, tmp_path):
    from archlab.build import save
    from archlab.export.weights import is_foreign

    path, ref = resnet_file
    design = archlab.load("resnet18", **SMALL_RESNET)
    folder = save(build(design), design, tmp_path / "built")
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(plain))
    assert is_foreign(path) and is_foreign(plain)
    # archlab's own files name node paths: a removed node is never matched to a new one by shape
    assert not is_foreign(folder) and not is_foreign(folder / "weights.safetensors")
