"""The 2-D matmul form of DenseGeneral is the same product, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research.models.kernels import cpu_matmul


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
  got = lambda x, k: cpu_matmul.matmul_trailing(x, k, n_contract)
  np.testing.assert_allclose(got(x, kernel), ref(x, kernel), rtol=1e-5, atol=1e-5)
  weight = jnp.asarray(rng.normal(size=ref(x, kernel).shape), jnp.float32)
  grads = [jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) * weight), argnums=(0, 1))(x, kernel)
           for f in (ref, got)]
  for r, g in zip(*grads):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)
  assert got(x, kernel).shape == x_shape[:len(x_shape) - n_contract] + kernel_shape[n_contract:]


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('n_in,n_out', [(16, 4), (8, 8), (4, 16)])
def test_matmul_weight_gradient_on_cpu(n_in, n_out, dtype):
  """Jitted, the weight gradient is x^T @ dy in the input dtype; on CPU it is computed
  as (dy^T @ x)^T, behind optimization barriers, exactly where dy is no wider than x."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 5, n_in)), dtype)
  kernel = jnp.asarray(rng.normal(size=(n_in, n_out)), dtype)
  weight = jnp.asarray(rng.normal(size=(3, 5, n_out)), dtype)
  loss = lambda x, k: jnp.sum((cpu_matmul.matmul_trailing(x, k, 1) * weight).astype(jnp.float32))
  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  dx, dk = grad(x, kernel)
  assert dx.dtype == dk.dtype == dtype
  x32, k32, w32 = (np.asarray(a, np.float32) for a in (x, kernel, weight))
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(np.asarray(dk, np.float32),
                             x32.reshape(-1, n_in).T @ w32.reshape(-1, n_out),
                             rtol=tol, atol=tol * 10)
  np.testing.assert_allclose(np.asarray(dx, np.float32), w32 @ k32.T, rtol=tol, atol=tol * 10)
  jaxpr = str(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1)))(x, kernel))
  assert ('optimization_barrier' in jaxpr) == (n_out <= n_in)
