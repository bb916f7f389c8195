"""The 2-D matmul form of DenseGeneral is the same product, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models import layers


@pytest.mark.parametrize('x_shape,kernel_shape,n_contract', [
    ((2, 5, 8), (8, 3, 4), 1),    # q/k/v projection: [b, l, d] x [d, heads, head_dim]
    ((2, 5, 3, 4), (3, 4, 8), 2),  # output projection: [b, l, heads, head_dim] x [..., d]
    ((7, 8), (8, 6), 1),
])
def test_matmul_trailing_equals_dot_general(x_shape, kernel_shape, n_contract):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=kernel_shape), jnp.float32)
  axis = tuple(range(len(x_shape) - n_contract, len(x_shape)))
  ref = lambda x, k: jax.lax.dot_general(x, k, ((axis, tuple(range(n_contract))), ((), ())))
  got = lambda x, k: layers.matmul_trailing(x, k, n_contract)
  np.testing.assert_allclose(got(x, kernel), ref(x, kernel), rtol=1e-5, atol=1e-5)
  weight = jnp.asarray(rng.normal(size=ref(x, kernel).shape), jnp.float32)
  grads = [jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) * weight), argnums=(0, 1))(x, kernel)
           for f in (ref, got)]
  for r, g in zip(*grads):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
  assert got(x, kernel).shape == x_shape[:len(x_shape) - n_contract] + kernel_shape[n_contract:]
