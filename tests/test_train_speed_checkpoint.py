"""The checkpoint serialiser of archlab's runs writes what torch.save writes, byte for byte."""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict

import pytest
import torch

from archlab.train.checkpoint import read_checkpoint, torch_save_bytes, write_temporary


def _torch_save(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _checkpoint_like() -> dict:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3))
    opt = torch.optim.Adam([{"params": [p for p in model.parameters() if p.ndim > 1], "weight_decay": 1e-4},
                            {"params": [p for p in model.parameters() if p.ndim <= 1]}])
    model(torch.randn(8, 6)).sum().backward()
    opt.step()
    counters = {k: {"total": {"ready": 3, "completed": 3}, "current": {"ready": 1}} for k in ("a", "b")}
    return {"epoch": 2, "global_step": 40, "pytorch-lightning_version": "2.6.6",
            "state_dict": model.state_dict(), "loops": {"fit_loop": counters, "flag": True, "none": None},
            "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_score": torch.tensor(0.5),
                                                              "kth_value": torch.tensor(float("inf")),
                                                              "best_model_path": "/x/best.ckpt"}},
            "optimizer_states": [opt.state_dict()], "lr_schedulers": [], "archlab": {"design": "d: 1"}}


def _odd_tensors() -> dict:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    return {"view": base[1:3, ::2], "base": base, "same_storage_again": base.view(-1)[5:],
            "transposed": base.t(), "empty": torch.empty(0), "int": torch.arange(5),
            "bool": torch.tensor([True, False]), "half": torch.ones(3, dtype=torch.float16),
            "uint16": torch.zeros(4, dtype=torch.uint16), "scalar": torch.tensor(3.5),
            "param": torch.nn.Parameter(torch.ones(2)), "grad": torch.ones(2, requires_grad=True),
            "nested": [(1, 2.5, "s", b"b", None), {"k": [torch.zeros(2, dtype=torch.int8)]}],
            "shared": [base, base], "complex": torch.ones(2, dtype=torch.complex64),
            "conj": torch.ones(2, dtype=torch.complex64).conj(), "neg": torch.ones(2, dtype=torch.complex64).conj().imag,
            "hooked": _hooked(), "attrs": _with_attribute(), "big_stride": torch.ones(3, 1).expand(3, 4)}


def _hooked() -> torch.Tensor:
    t = torch.ones(2, requires_grad=True)
    t.register_hook(lambda g: g)
    return t


def _with_attribute() -> torch.Tensor:
    t = torch.ones(2)
    t.note = "kept"  # Python state: pickled by Tensor.__reduce_ex__'s own path
    return t


@pytest.mark.parametrize("make", [_checkpoint_like, _odd_tensors])
def test_bytes_equal_torch_save(make):
    obj = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hooked tensor: hooks are not saved, said alike
        assert torch_save_bytes(obj) == _torch_save(obj)


def test_the_lean_pickler_is_used(monkeypatch):
    """torch.save gets the lean pickle module (and the file is still torch.save's own)."""
    import archlab.train.checkpoint as ck

    made = []

    class Counting(ck._LeanPickler):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(ck._LeanPickle, "Pickler", Counting)
    obj = _checkpoint_like()
    ours = torch_save_bytes(obj)
    assert made == [1]                      # torch.save pickled through the lean pickler
    assert ours == _torch_save(obj)


def test_temporary_file_loads_as_written(tmp_path):
    obj = _checkpoint_like()
    tmp = write_temporary(obj, tmp_path / "last.ckpt")
    with open(tmp, "rb") as fh:
        assert fh.read() == _torch_save(obj)
    back = read_checkpoint(tmp_path / tmp.rsplit("/", 1)[1])  # weights_only=True reads it
    for k, v in obj["state_dict"].items():
        assert torch.equal(back["state_dict"][k], v)
    assert back["loops"] == obj["loops"]


def test_fallback_to_torch_save_under_skip_data():
    skip = getattr(torch.serialization, "skip_data", None)
    if skip is None:
        pytest.skip("this torch has no skip_data")
    obj = {"w": torch.ones(3)}
    with skip():
        ours = torch_save_bytes(obj)
    with skip():
        theirs = _torch_save(obj)
    assert ours == theirs


def test_mixed_dtypes_on_one_storage_refused_like_torch():
    base = torch.zeros(4)
    obj = OrderedDict(a=base, b=base.view(torch.int32))
    with pytest.raises(RuntimeError, match="different types"):
        _torch_save(obj)
    with pytest.raises(RuntimeError, match="different types"):
        torch_save_bytes(obj)


def test_a_write_failing_half_way_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    from archlab.train import checkpoint as C

    path = tmp_path / "c.ckpt"
    io_ = C.SafeCheckpointIO()
    io_.save_checkpoint({"w": torch.ones(2)}, path)

    def broken(fh, obj):
        fh.write(C.torch_save_bytes(obj)[:10])
        raise OSError("disk full")

    monkeypatch.setattr(C, "write_checkpoint_to", broken)
    with pytest.raises(OSError, match="disk full"):
        io_.save_checkpoint({"w": torch.zeros(2)}, path)
    monkeypatch.undo()
    assert torch.equal(io_.load_checkpoint(path)["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["c.ckpt"]
