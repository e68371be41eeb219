"""Weights in and models out: foreign state dicts into designs (weights.py), and designs, runs
and built folders out as ONNX (onnx.py), TorchScript or a torch.export program (script.py), or
one standalone PyTorch file plus safetensors (eject.py)."""
