"""cuDNN's fused (FlashAttention-style) attention on GPUs, forward and backward.

On a GPU with bf16/fp16 activations, `jax.nn.dot_product_attention(implementation=
'cudnn')` runs cuDNN's fused kernels. cuDNN takes a mask only as an additive bias, which
it reads for every head, and it skips the blocks above the diagonal only for its own
causal mask. So the mask picks one of three calls at run time (`lax.switch`, one per
layer):
  0. exactly causal (one segment per row, no padding): the causal kernel, no bias;
  1. nothing above the diagonal (packed rows, padding): causal kernel plus the mask as bias;
  2. anything else (bidirectional encoder, prefix LM, cross-attention): the mask as bias.
With a sliding window W, "causal" means causal within the band (key index in
(q - W, q]) and calls 0 and 1 pass `local_window_size=(W - 1, 0)`, so cuDNN skips the
blocks outside the band as well; call 2 has the window in its mask only.
Elsewhere (CPU, TPU, fp32, head dim over 128 or not a multiple of 8, odd lengths) it is
`cpu_attention.blocked_attention`. Checked against the reference on a GPU by
benchmarks/attention_check.py. Nothing here takes a position bias.
"""
import functools

import jax
import jax.numpy as jnp

from research.models.kernels import cpu_attention


def _cudnn_usable(q_bqhd, k_bkgd) -> bool:
  # cuDNN's flash attention with a bias needs even sequence lengths; lax.switch traces
  # every branch, so the exactly causal case needs them too.
  return (jax.default_backend() == 'gpu'
          and q_bqhd.dtype in (jnp.bfloat16, jnp.float16) and q_bqhd.shape[-1] <= 128
          and q_bqhd.shape[-1] % 8 == 0 and q_bqhd.shape[1] % 2 == 0
          and k_bkgd.shape[1] % 2 == 0)


def cudnn_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale, lower_triangular=False,
                    window=None):
  """cuDNN fused attention where it applies (see above), else `blocked_attention`.
  `window`: the sliding window the mask already holds, if any."""
  if not _cudnn_usable(q_bqhd, k_bkgd):
    return cpu_attention.blocked_attention(q_bqhd, k_bkgd, v_bkgd, mask_b1qk, scale,
                                           lower_triangular)
  call = functools.partial(jax.nn.dot_product_attention, q_bqhd, k_bkgd, v_bkgd,
                           scale=scale, implementation='cudnn')
  local = {} if window is None else {'local_window_size': (window - 1, 0)}
  causal_only = lambda: call(is_causal=True, **local)
  causal_masked = lambda: call(mask=mask_b1qk, is_causal=True, **local)
  masked = lambda: call(mask=mask_b1qk)
  q_len, k_len = q_bqhd.shape[1], k_bkgd.shape[1]
  if q_len != k_len:
    return masked()
  return jax.lax.switch(cudnn_branch(mask_b1qk, window), (causal_only, causal_masked, masked))


def cudnn_branch(mask_b1qk, window=None):
  """0: the mask is exactly causal (within the band of the last `window` keys, if given);
  1: nothing above the diagonal; 2: anything else."""
  q_len, k_len = mask_b1qk.shape[-2:]
  lower = jnp.tril(jnp.ones((q_len, k_len), bool))
  band = lower
  if window is not None:
    band = lower & ~jnp.tril(jnp.ones((q_len, k_len), bool), -window)
  return jnp.where(jnp.all(mask_b1qk == band), 0,
                   jnp.where(jnp.any(mask_b1qk & ~lower), 2, 1))
