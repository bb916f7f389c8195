"""Dense layers as one 2-D matmul, with a weight gradient that XLA:CPU runs on YNNPACK.

Used on every backend: the product and the gradients are XLA's everywhere except the
weight gradient on CPU (`_weight_grad_cpu`).
"""
import math

import jax
import jax.numpy as jnp


def matmul_trailing(x, kernel, n_contract: int):
  """x [*lead, *in] @ kernel [*in, *out] as one 2-D matmul [rows, in] @ [in, out].

  The same product as the dot_general over the trailing axes, but XLA:CPU differentiates
  the 2-D form much faster: with [batch, length] left as two dimensions, the weight
  gradient contracts over both, and XLA transposed the output gradient through slow
  fused copies (benchmarks/train_step.py)."""
  lead, contract = x.shape[:x.ndim - n_contract], x.shape[x.ndim - n_contract:]
  out = kernel.shape[n_contract:]
  rows = math.prod(lead)
  y = _matmul(x.reshape(rows, math.prod(contract)),
              kernel.reshape(math.prod(contract), math.prod(out)))
  return y.reshape(*lead, *out)


@jax.custom_vjp
def _matmul(x, w):
  """x [rows, in] @ w [in, out]; the gradient is XLA's, except the weight gradient on CPU.

  The weight gradient x^T @ dy contracts the rows of both operands. XLA:CPU hands a dot
  to YNNPACK only when its left operand is row-major and contracted on its last
  dimension (`IsDotSupportedByYnn`, xla/backends/cpu/ynn_support.cc), so x^T @ dy runs
  as an Eigen contraction, 1.4-1.6 times YNNPACK's time. Where dy is no wider than x
  (the MLP's output projection, the attention output), `_weight_grad_cpu` copies dy^T
  (the smaller operand) and computes (dy^T @ x)^T with YNNPACK. Where dy is wider (the
  MLP input, q/k/v), XLA's form stays: there the Eigen dot runs concurrently with the
  input gradient's, and copying x^T measured slower in the train step."""
  return x @ w


def _matmul_fwd(x, w):
  return x @ w, (x, w)


def _matmul_bwd(residuals, dy):
  x, w = residuals
  dw = jax.lax.platform_dependent(x, dy, cpu=_weight_grad_cpu, default=_weight_grad)
  return dy @ w.T, dw.astype(w.dtype)


def _weight_grad(x, dy):
  return x.T @ dy


def _weight_grad_cpu(x, dy):
  if dy.shape[1] > x.shape[1]:
    return _weight_grad(x, dy)
  # The barriers keep XLA from folding either transpose back into the dot (which would
  # make it the Eigen contraction again).
  dy_t = jax.lax.optimization_barrier(jnp.transpose(dy))
  return jnp.transpose(jax.lax.optimization_barrier(dy_t @ x))


_matmul.defvjp(_matmul_fwd, _matmul_bwd)
