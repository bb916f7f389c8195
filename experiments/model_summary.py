r"""Parameter counts, FLOPs per token and one jitted forward/backward of a model.

  python experiments/model_summary.py --gin_file=gin_configs/models/llama.gin \
      --gin_bindings='TransformerConfig.d_model = 256' --seq_len=256
"""
import time

from absl import flags
import gin
import jax
import jax.numpy as jnp
import numpy as np

from research import cli
from research import gin_files
from research import models

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('gin_file', [], 'Gin files with TransformerConfig bindings.')
flags.DEFINE_multi_string('gin_bindings', [], 'Extra gin bindings.')
flags.DEFINE_integer('seq_len', 128, 'Sequence length (decoder length for enc-dec).')
flags.DEFINE_integer('inputs_len', 128, 'Encoder length for encoder-decoder models.')
flags.DEFINE_integer('batch', 2, 'Batch size of the forward/backward check.')


def summarize(cfg: models.TransformerConfig, seq_len: int, inputs_len: int, batch: int):
  counts = models.count_params(cfg)
  print(f'family={cfg.family} d_model={cfg.d_model} layers={cfg.num_layers} '
        f'heads={cfg.num_heads}/{cfg.kv_heads} ff={cfg.ff_hidden} '
        f'activation={cfg.activation} position={cfg.position} norm={cfg.norm}')
  print(f"params: total={counts['total']:,} embedding={counts['embedding']:,} "
        f"non_embedding={counts['non_embedding']:,}")
  if cfg.family == 'encoder_decoder':
    flops = models.flops_per_example(cfg, inputs_len, seq_len)
    unit = f'per example ({inputs_len} in, {seq_len} out)'
  else:
    flops = models.flops_per_token(cfg, seq_len)
    unit = f'per token at context {seq_len}'
  print(f'training FLOPs {unit}: ' + ', '.join(f'{k}={v:.4g}' for k, v in flops.items()))

  rng = np.random.default_rng(0)
  tokens = lambda n: jnp.asarray(rng.integers(1, cfg.vocab_size, (batch, n)), jnp.int32)
  key = {'encoder': 'encoder_input_tokens'}.get(cfg.family, 'decoder_input_tokens')
  feats = {key: tokens(seq_len)}
  if cfg.family == 'encoder_decoder':
    feats['encoder_input_tokens'] = tokens(inputs_len)
  module = models.build(cfg)
  params = jax.jit(lambda k: module.init(k, **feats))(jax.random.key(0))['params']

  def loss_fn(p):
    logits = module.apply({'params': p}, **feats)
    loss, _, weight = models.losses.cross_entropy_loss(logits, feats[key], z_loss=cfg.z_loss)
    return loss / weight

  start = time.perf_counter()
  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
  grad_norm = float(jnp.sqrt(sum(jnp.sum(g.astype(jnp.float32) ** 2)
                                 for g in jax.tree.leaves(grads))))
  print(f'forward/backward: loss={float(loss):.4f} (ln vocab={np.log(cfg.vocab_size):.4f}) '
        f'grad_norm={grad_norm:.4f} finite={np.isfinite(grad_norm)} '
        f'compile+run={time.perf_counter() - start:.1f}s')


def main(argv):
  del argv  # cli.run refuses extra arguments
  gin_files.add_search_paths()
  paths = gin_files.resolve_all(FLAGS.gin_file)
  try:
    gin.parse_config_files_and_bindings(paths, FLAGS.gin_bindings)
    cfg = models.TransformerConfig()
  except (ValueError, OSError, SyntaxError, models.ConfigError) as e:
    cli.usage_error('model_summary.py', e)  # first line: gin appends call context
  summarize(cfg, FLAGS.seq_len, FLAGS.inputs_len, FLAGS.batch)


if __name__ == '__main__':
  cli.run(main, 'model_summary.py')
