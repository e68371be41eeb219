"""A GAN under DDP on two CPU processes (gloo): manual optimisation with two optimisers works,
the replicas stay equal (DDP averaged both networks' gradients on every step), each rank draws
its own noise, and one run folder is written by rank 0.

Oracle: the two processes' own weights after training, saved by each rank. Batch-norm running
statistics are per process (no SyncBatchNorm), so they differ; every learned tensor must not."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

SCRIPT = textwrap.dedent("""
    import sys, torch, archlab
    from lightning.pytorch.callbacks import Callback

    class Save(Callback):
        def on_train_end(self, trainer, module):
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            torch.save(state, f"{sys.argv[1]}/rank{trainer.global_rank}.pt")

    archlab.train("dcgan_mnist_generator", "mnist5k", task="gan", variables={"ngf": 8},
                  discriminator="dcgan_mnist_discriminator", d_variables={"ndf": 8}, epochs=2, batch=16,
                  progress=False, judge=False, split=(0.04, 0.02, 0.94), accelerator="cpu",
                  strategy="ddp", devices=2, out=sys.argv[1] + "/runs", callbacks=[Save()])
""")


def test_gan_under_ddp_keeps_replicas_equal_and_writes_one_run(tmp_path):
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs                       # rank 1 used rank 0's folder
    run = runs[0]
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 2
    steps = 200 // 2 // 16 + 1                         # 200 training images over 2 ranks, batch 16
    assert len((run / "health" / "generative.jsonl").read_text().splitlines()) == 2 * steps
    assert (run / "health" / "generator" / "series.npz").exists()
    assert json.loads((run / "summary.json").read_text())["epochs_run"] == 2
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    learned = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert learned and all(torch.equal(a[k], b[k]) for k in learned)
    # the ranks saw different real and generated images: their batch statistics differ
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("generator.") and "running_mean" in k)
