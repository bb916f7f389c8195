r"""Trains one model: gin config in, run directory out (DESIGN.md's layout).

  python experiments/train.py --gin_file=gin_configs/runs/tiny.gin --workdir=/tmp/tiny \
      [--gin_bindings="TRAIN_STEPS = 20"] [--multihost]

Re-running the same command resumes from the latest checkpoint. SIGTERM saves a checkpoint
and exits 0. A bad flag, binding, path or mesh fails with one line and a non-zero exit.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)  # runnable from a checkout without `pip install -e .`

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), in order.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [],
                                          'Gin bindings, applied after the files.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if present).')
_MULTIHOST = flags.DEFINE_bool('multihost', False,
                               'Call jax.distributed.initialize (pods, multi-node GPU).')


def _fail(message: str, code: int = 1):
  first = str(message).strip().splitlines()[0] if str(message).strip() else 'unknown error'
  print(f'train.py: error: {first}', file=sys.stderr)
  sys.exit(code)



def _load_gin():
  import gin
  # Register the configurables a run config names, so bindings resolve without imports.
  from research.train import sources, trainer  # pylint: disable=unused-import
  gin.add_config_file_search_path(os.path.join(_REPO, 'gin_configs'))
  gin.add_config_file_search_path(_REPO)
  if not _GIN_FILE.value:
    _fail('--gin_file is required')
  for path in _GIN_FILE.value:
    if not os.path.exists(path) and not os.path.exists(os.path.join(_REPO, 'gin_configs',
                                                                    path)):
      _fail(f'--gin_file {path!r} does not exist')
  try:
    gin.parse_config_files_and_bindings(_GIN_FILE.value, _GIN_BINDINGS.value,
                                        finalize_config=False)
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    _fail(f'bad gin config: {e}')
  from research.models import ConfigError, TransformerConfig
  try:
    TransformerConfig()  # its checks (types, divisibility) before the run directory exists
  except ConfigError as e:
    _fail(e)


def _check_workdir(workdir):
  if not workdir:
    _fail('--workdir is required')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    _fail(f'--workdir {workdir!r} cannot be created: {e.strerror}')
  if not os.access(workdir, os.W_OK):
    _fail(f'--workdir {workdir!r} is not writable')


def main(argv):
  if len(argv) > 1:
    _fail(f'unexpected arguments: {" ".join(argv[1:])}', code=2)
  logging.set_verbosity(logging.WARNING)  # the progress line and errors are the output
  from research.parallel import host
  host.tune_allocator()  # before JAX allocates (research/parallel/host.py)
  if not _WORKDIR.value:
    _fail('--workdir is required')
  _load_gin()  # a bad config or mesh fails before the run directory is created
  from research import parallel
  if _MULTIHOST.value:
    parallel.initialize()  # after gin (it is configurable), before any JAX backend use
  try:
    parallel.make_mesh(parallel.MeshConfig())  # the trainer builds it again, same devices
  except parallel.MeshError as e:
    _fail(e)
  _check_workdir(_WORKDIR.value)
  from research.models import ConfigError
  from research.train import trainer
  from research.train.checkpoints import CheckpointError
  from research.train.guard import StabilityError
  try:
    summary = trainer.train(_WORKDIR.value)
  except CheckpointError as e:  # at start-up or a rollback: nothing is being written then
    host.exit_at_once(f'train.py: error: {str(e).splitlines()[0]}')
  except (parallel.MeshError, ConfigError, StabilityError, ValueError, TypeError) as e:
    _fail(e)
  state = 'preempted: checkpoint saved' if summary.get('preempted') else 'done'
  print(f'train.py: {state} at step {summary.get("step")}; run directory {_WORKDIR.value}',
        file=sys.stderr)


if __name__ == '__main__':
  from research import cli  # pylint: disable=g-import-not-at-top
  app.run(main, flags_parser=cli.flags_parser('train.py'))
