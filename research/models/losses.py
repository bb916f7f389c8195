"""Token cross-entropy with PaLM's z-loss, in fp32 whatever the compute dtype."""
import jax
import jax.numpy as jnp


def cross_entropy_loss(logits_blv, targets_bl, weights_bl=None, z_loss: float = 0.0):
  """Returns (loss_sum, z_loss_sum, weight_sum); divide by weight_sum for means.

  z-loss (Chowdhery et al. 2022, PaLM sec. 5) adds z_loss * log(Z)^2 per token
  to keep the softmax normalizer near 1; loss_sum includes it.
  """
  logits = logits_blv.astype(jnp.float32)
  if weights_bl is None:
    weights_bl = jnp.ones(targets_bl.shape, jnp.float32)
  weights = weights_bl.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets_bl[..., None].astype(jnp.int32),
                                     axis=-1)[..., 0]
  nll = log_z - target_logit
  z_term = z_loss * jnp.square(log_z)
  return (jnp.sum((nll + z_term) * weights), jnp.sum(z_term * weights),
          jnp.sum(weights))
