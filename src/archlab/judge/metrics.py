"""Sample metrics in a feature space: Frechet distance, precision/recall, class coverage.

* **Frechet distance** between Gaussians fitted to two feature sets (Dowson & Landau 1982; the
  form Heusel et al. 2017 use for FID): ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The
  trace of the matrix square root is computed as the sum of the square roots of the eigenvalues
  of ``S1^(1/2) S2 S1^(1/2)`` (symmetric, positive semi-definite: exact, with no complex parts).
  The estimate is biased upwards at small sample sizes: compare values only at equal sizes.
* **Precision and recall** (Kynkaanniemi et al. 2019): each real feature gets a ball whose radius
  is the distance to its k-th nearest real neighbour; precision is the share of generated
  samples inside at least one real ball (fidelity), recall the share of real samples inside at
  least one generated ball (diversity), k = 3 as in the paper.
* **Class coverage**: the classifier's label of each sample; the share labelled with
  probability >= ``confidence`` (0.9), the histogram of labels, and the number of classes that
  hold at least ``min_share`` (half of a uniform share) of the samples: mode coverage.
"""

from __future__ import annotations

import numpy as np
import torch

CONFIDENCE = 0.9


def _stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets a (N, D) and b (M, D)."""
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    mu1, s1 = _stats(a)
    mu2, s2 = _stats(b)
    return frechet_from_stats(mu1, s1, mu2, s2)


def frechet_from_stats(mu1, s1, mu2, s2) -> float:
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    trace_root = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * trace_root)


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values   # +1: the point itself is at distance 0


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    inside = []
    for i in range(0, len(points), chunk):
        d = torch.cdist(points[i:i + chunk], centres)
        inside.append((d <= radii.unsqueeze(0)).any(1))
    return torch.cat(inside)


def precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3) -> dict:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of ``fake`` against ``real``."""
    real = torch.as_tensor(np.asarray(real), dtype=torch.float64)
    fake = torch.as_tensor(np.asarray(fake), dtype=torch.float64)
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"precision/recall needs more than k={k} samples per set")
    precision = _covered(fake, real, _kth_radius(real, k)).double().mean()
    recall = _covered(real, fake, _kth_radius(fake, k)).double().mean()
    return {"precision": float(precision), "recall": float(recall), "k": k}


def class_coverage(probabilities: torch.Tensor, confidence: float = CONFIDENCE,
                   min_share: float | None = None) -> dict:
    """(N, K) class probabilities of samples -> confident share, histogram, classes covered."""
    p = torch.as_tensor(probabilities, dtype=torch.float64)
    k = p.shape[1]
    top, label = p.max(1)
    hist = torch.bincount(label, minlength=k).double() / len(p)
    min_share = 0.5 / k if min_share is None else min_share
    return {"confident_share": float((top >= confidence).double().mean()),
            "class_histogram": [round(float(h), 4) for h in hist],
            "classes_covered": int((hist >= min_share).sum()),
            "min_class_share": float(hist.min()),
            "confidence": confidence, "min_share": min_share}
