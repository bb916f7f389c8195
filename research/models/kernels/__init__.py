"""Kernels behind the model's attention and dense layers, one module per target.

`cpu_attention` (blocked and tiled causal attention with hand-written backwards) and
`cpu_matmul` (dense layers as one 2-D matmul, the weight gradient reshaped for XLA:CPU)
are shaped by what XLA:CPU compiles well; `gpu_attention` calls cuDNN's fused attention.
None of them takes a position bias: `research/models/attention.py` sends a biased call to
its einsum reference, and chooses among the implementations per backend.
"""

NEG_INF = -1e10  # finite, so fully masked (padding) rows stay NaN-free
