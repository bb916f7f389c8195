"""Parameter counts and FLOPs: the x-axes of the scaling fits must be exact."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from research import models
from tests.models import helpers

CONFIGS = [
    dict(),
    dict(num_kv_heads=2, activation='swiglu', ff_two_thirds=True, tie_embeddings=False),
    dict(num_kv_heads=1, position='learned', norm='layernorm', use_bias=True),
    dict(position='t5_relative', activation='geglu', head_dim=16),
    dict(family='encoder_decoder', position='t5_relative', num_encoder_layers=3,
         num_decoder_layers=1, activation='relu'),
    dict(family='encoder_decoder', position='learned', norm='layernorm', use_bias=True,
         norm_position='post', num_kv_heads=2, tie_embeddings=False),
    dict(family='encoder', position='learned', norm='layernorm', norm_position='post',
         use_bias=True, activation='gelu_exact'),
    dict(family='encoder', position='alibi', activation='reglu'),
    dict(attention_only=True),
    dict(attention_only=True, norm='layernorm', use_bias=True, position='learned'),
]


def _tree_counts(cfg):
  feats = helpers.features(cfg)
  shapes = jax.eval_shape(lambda: models.build(cfg).init(jax.random.key(0), **feats))
  params = nn.unbox(shapes['params'])
  total = sum(x.size for x in jax.tree.leaves(params))
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  is_embedding = lambda path: any(
      getattr(k, 'key', None) in ('token_embed', 'lm_head', 'pos_embed', 'position_bias')
      for k in path)
  embedding = sum(x.size for path, x in flat if is_embedding(path))
  return total, embedding


@pytest.mark.parametrize('overrides', CONFIGS)
def test_analytic_counts_equal_parameter_tree(overrides):
  cfg = helpers.tiny(**overrides)
  total, embedding = _tree_counts(cfg)
  counts = models.count_params(cfg)
  assert counts['total'] == total
  assert counts['embedding'] == embedding
  assert counts['non_embedding'] == total - embedding


def test_published_parameter_counts():
  # GPT-2 small (Radford et al. 2019; HF gpt2 num_parameters()): 124,439,808.
  gpt2 = models.TransformerConfig(vocab_size=50257, d_model=768, num_layers=12,
                                  num_heads=12, d_ff=3072, norm='layernorm',
                                  norm_eps=1e-5, use_bias=True, position='learned',
                                  max_length=1024, activation='gelu')
  assert models.count_params(gpt2)['total'] == 124_439_808
  # Llama-2-7B (Touvron et al. 2023; HF meta-llama/Llama-2-7b-hf): 6,738,415,616,
  # with LLaMA's hidden = 256 * ceil(2/3 * 4d / 256) = 11008.
  llama = models.TransformerConfig(vocab_size=32000, d_model=4096, num_layers=32,
                                   num_heads=32, d_ff=4 * 4096, ff_two_thirds=True,
                                   ff_multiple_of=256, activation='swiglu',
                                   tie_embeddings=False, max_length=4096)
  assert llama.ff_hidden == 11008
  assert models.count_params(llama)['total'] == 6_738_415_616
  # T5-base v1.0 (Raffel et al. 2020; HF t5-base num_parameters()): 222,903,552.
  t5 = models.TransformerConfig(family='encoder_decoder', vocab_size=32128, d_model=768,
                                num_layers=12, num_heads=12, d_ff=3072, activation='relu',
                                position='t5_relative')
  assert models.count_params(t5)['total'] == 222_903_552


def test_flops_conventions_by_hand():
  cfg = helpers.tiny(vocab_size=100, d_model=16, num_layers=2, num_heads=2, d_ff=64)
  seq = 10
  n = models.count_params(cfg)
  flops = models.flops_per_token(cfg, seq)
  assert flops['6N'] == 6 * n['total']
  assert flops['6N_nonembed'] == 6 * n['non_embedding']
  # Kaplan et al. 2020, Table 1: C = 6N + 6 n_layer n_ctx d_attn (training).
  assert flops['kaplan'] == 6 * n['non_embedding'] + 6 * 2 * seq * 16
  # Hoffmann et al. 2022, Appendix F, per sequence, worked out for this config:
  emb = 2 * seq * 100 * 16
  attn = (2 * 3 * seq * 16 * 16 + 2 * seq * seq * 16 + 3 * 2 * seq * seq
          + 2 * seq * seq * 16 + 2 * seq * 16 * 16)
  dense = 2 * seq * (16 * 64 + 64 * 16)
  logits = 2 * seq * 16 * 100
  assert flops['chinchilla'] == pytest.approx(3 * (emb + 2 * (attn + dense) + logits) / seq)


def test_chinchilla_flops_close_to_6n_at_scale():
  # Hoffmann et al. 2022 Table A4: for large models the full count is within a
  # few percent of 6N (e.g. ~1.0x at Chinchilla's 70B / 2048 context).
  cfg = models.TransformerConfig(vocab_size=32000, d_model=8192, num_layers=80,
                                 num_heads=64, d_ff=4 * 8192, activation='relu',
                                 tie_embeddings=False, max_length=2048)
  f = models.flops_per_token(cfg, 2048)
  assert 0.95 < f['chinchilla'] / f['6N'] < 1.10


def test_encoder_decoder_flops():
  cfg = helpers.tiny(family='encoder_decoder', num_encoder_layers=2, num_decoder_layers=3)
  n = models.count_params(cfg)
  f = models.flops_per_example(cfg, 12, 5)
  assert f['6N_nonembed'] == 6 * (n['encoder_non_embedding'] * 12
                                  + n['decoder_non_embedding'] * 5)
  assert f['kaplan'] == f['6N_nonembed'] + 6 * 32 * (2 * 12 * 12 + 3 * (5 * 5 + 5 * 12))
  with pytest.raises(ValueError, match='flops_per_example'):
    models.flops_per_token(cfg, 8)


def test_z_loss_and_cross_entropy():
  logits = jnp.asarray([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]]])
  targets = jnp.asarray([[0, 2]])
  weights = jnp.asarray([[1.0, 0.0]])
  loss, z, w = models.losses.cross_entropy_loss(logits, targets, weights, z_loss=1e-2)
  log_z = float(jnp.log(jnp.exp(2.0) + 1 + jnp.exp(-1.0)))
  assert float(w) == 1.0
  assert float(z) == pytest.approx(1e-2 * log_z ** 2, rel=1e-6)
  assert float(loss) == pytest.approx(log_z - 2.0 + 1e-2 * log_z ** 2, rel=1e-6)
