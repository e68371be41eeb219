"""Per-op records: the one representation that analysis and design review read.

A record describes one primitive operation for ONE sample (batch 1). Records come from two
sources that must agree exactly:

* analytically, from a design: every block lists its ops (``Block.ops``), no tensors at all;
* by tracing any ``torch.nn.Module`` on the meta device (``archlab.analysis``).

Counting conventions (stated in docs and output):

* ``params``: parameters as PyTorch counts them; BatchNorm running statistics are buffers.
* ``multiply_adds``: multiply-accumulates of conv/linear/matmul/attention only, the headline
  compute figure of torchvision and ShuffleNetV2. FLOPs = 2 x multiply-adds where shown.
  Bias additions are not multiply-adds (as in ``torch.utils.flop_counter``).
* ``elementwise``: element-wise operations (activations, adds, norm, pooling), never dropped.
* memory access (ShuffleNetV2): input elements read + weight elements read + output elements
  written. For a 1x1 conv ``h*w*(c1+c2) + c1*c2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

Shape = tuple[int, ...]


def numel(shape: Shape) -> int:
    return math.prod(shape) if shape else 1


@dataclass(frozen=True)
class Op:
    """One primitive operation on one sample.

    kind:           aten-like op name: 'conv2d', 'conv_transpose2d', 'linear', 'matmul',
                    'batch_norm', 'layer_norm', 'group_norm', 'instance_norm', 'relu', 'add',
                    'mul', 'cat', 'max_pool2d', 'avg_pool2d', 'adaptive_avg_pool2d', ...
    path:           dotted module path of the op inside the built model ('' = the node itself).
    inputs:         shapes of the activation inputs, without the batch dimension.
    output:         shape of the output, without the batch dimension.
    params:         parameters this op owns (PyTorch convention).
    multiply_adds:  multiply-accumulates (conv/linear/matmul/attention), per sample.
    elementwise:    element-wise operations, per sample.
    weights_read:   weight elements read (usually == params; 0 for parameter-free ops).
    """

    kind: str
    path: str
    inputs: tuple[Shape, ...]
    output: Shape
    params: int = 0
    multiply_adds: int = 0
    elementwise: int = 0
    weights_read: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def memory_access(self) -> int:
        """Elements read and written (ShuffleNetV2's MAC): inputs + weights + output."""
        return sum(numel(s) for s in self.inputs) + self.weights_read + numel(self.output)

    def under(self, prefix: str) -> Op:
        """The same op seen from a parent module whose child is named ``prefix``."""
        if not prefix:
            return self
        # the constructor directly: dataclasses.replace is ~10x slower, and the analytic
        # analysis of a search's thousands of designs calls this once per op per level
        path = f"{prefix}.{self.path}" if self.path else prefix
        return type(self)(self.kind, path, self.inputs, self.output, self.params,
                          self.multiply_adds, self.elementwise, self.weights_read, self.extra)


def prefixed(prefix: str, ops: list[Op]) -> list[Op]:
    return [op.under(prefix) for op in ops]


# --------------------------------------------------------------------------------------------
# Constructors for the primitive ops. Block formulas are written with these, so each formula
# lives in one place and the analysis tracer can be tested against the same numbers.
# --------------------------------------------------------------------------------------------


def conv_op(
    path: str,
    inp: Shape,
    out: Shape,
    kernel: tuple[int, ...],
    groups: int = 1,
    bias: bool = False,
    transposed: bool = False,
) -> Op:
    """Convolution (1D/2D/3D, grouped, transposed). ``inp``/``out`` are (C, *spatial)."""
    cin, cout = inp[0], out[0]
    k = math.prod(kernel)
    weights = cout * (cin // groups) * k if not transposed else cin * (cout // groups) * k
    params = weights + (cout if bias else 0)
    if transposed:
        # every input element is scattered through the kernel into cout/groups outputs
        macs = numel(inp) * (cout // groups) * k
    else:
        macs = numel(out) * (cin // groups) * k
    kind = f"conv_transpose{len(kernel)}d" if transposed else f"conv{len(kernel)}d"
    return Op(
        kind,
        path,
        (inp,),
        out,
        params=params,
        multiply_adds=macs,
        elementwise=numel(out) if bias else 0,
        weights_read=params,
    )


def linear_op(path: str, inp: Shape, out: Shape, bias: bool = True) -> Op:
    fin, fout = inp[-1], out[-1]
    rows = numel(inp) // fin
    params = fin * fout + (fout if bias else 0)
    return Op(
        "linear",
        path,
        (inp,),
        out,
        params=params,
        multiply_adds=rows * fin * fout,
        elementwise=rows * fout if bias else 0,
        weights_read=params,
    )


def norm_op(path: str, kind: str, shape: Shape, params: int) -> Op:
    """Normalisation: per element a subtract, a multiply (and an affine multiply-add)."""
    return Op(kind, path, (shape,), shape, params=params, elementwise=2 * numel(shape),
              weights_read=params)


def act_op(path: str, kind: str, shape: Shape, params: int = 0) -> Op:
    return Op(kind, path, (shape,), shape, params=params, elementwise=numel(shape),
              weights_read=params)


def eltwise_op(path: str, kind: str, inputs: tuple[Shape, ...], out: Shape, params: int = 0) -> Op:
    """add / mul / weighted sum: one operation per output element per extra input."""
    return Op(kind, path, tuple(inputs), out, params=params,
              elementwise=numel(out) * max(1, len(inputs) - 1), weights_read=params)


def pool_op(path: str, kind: str, inp: Shape, out: Shape, window: int) -> Op:
    return Op(kind, path, (inp,), out, elementwise=numel(out) * window)


def move_op(path: str, kind: str, inputs: tuple[Shape, ...], out: Shape) -> Op:
    """Data movement without arithmetic (cat, pixel_shuffle, channel_shuffle, copy)."""
    return Op(kind, path, tuple(inputs), out)


def matmul_op(path: str, a: Shape, b: Shape, out: Shape, kind: str = "matmul") -> Op:
    """Product of two activations (``a @ b``, batched over leading dims): every output element
    takes ``k`` multiply-adds, ``k`` being the contracted size ``a[-1]``. Neither operand is a
    weight, so nothing is counted as weights read (they are activation inputs)."""
    return Op(kind, path, (a, b), out, multiply_adds=numel(out) * a[-1])


def attention_op(path: str, q: Shape, k: Shape, v: Shape, out: Shape) -> Op:
    """Scaled dot-product attention softmax(q k^T / sqrt(d)) v (Vaswani et al. 2017).

    ``q`` = (..., Lq, d), ``k`` = (..., Lk, d), ``v`` = (..., Lk, dv), ``out`` = (..., Lq, dv).
    Multiply-adds: Lq*Lk*d for the scores plus Lq*Lk*dv for the weighted sum, per leading index.
    Element-wise: the 1/sqrt(d) scaling of q (one per element) and the softmax, three per
    score (exp, sum, divide; the same convention as :func:`softmax_op`).
    """
    heads = numel(q[:-2])
    scores = heads * q[-2] * k[-2]
    return Op("attention", path, (q, k, v), out,
              multiply_adds=scores * (q[-1] + v[-1]), elementwise=numel(q) + 3 * scores)


def softmax_op(path: str, shape: Shape, kind: str = "softmax") -> Op:
    """Softmax over the last axis: three operations per element (exp, sum, divide)."""
    return Op(kind, path, (shape,), shape, elementwise=3 * numel(shape))


def reduce_op(path: str, kind: str, inp: Shape, out: Shape) -> Op:
    """A reduction (sum, mean, amax, ...): one operation per input element."""
    return Op(kind, path, (inp,), out, elementwise=numel(inp))
