r"""The training command line: gin config in, run directory out (docs/design.md's layout).

  python -m research.train --gin_file=gin_configs/runs/tiny.gin --workdir=/tmp/tiny \
      [--gin_bindings="TRAIN_STEPS = 20"] [--multihost]

(`research-train` once installed.) Re-running the same command resumes from the latest
checkpoint. SIGTERM saves a checkpoint and exits 0. A bad flag, binding, value or path fails
with one line and exit 2, before anything is written; an impossible mesh, a corrupt
checkpoint or a diverged run with one line and exit 1.
"""
import os
import re
import tempfile
from typing import Sequence

from absl import flags
from absl import logging

from research import cli
from research import gin_files

PROG = 'research-train'

_GIN_FILE = flags.DEFINE_multi_string('gin_file', [], 'Gin config file(s), in order.')
_GIN_BINDINGS = flags.DEFINE_multi_string('gin_bindings', [],
                                          'Gin bindings, applied after the files.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (created; resumed if present).')
_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', None, 'JAX persistent compilation cache: runs of one shape '
    '(a sweep\'s sizes at each budget, a resumed run) load the programs compiled before.')
_MULTIHOST = flags.DEFINE_bool('multihost', False,
                               'Call jax.distributed.initialize (pods, multi-node GPU).')


def _load_gin(prog: str) -> None:
  import gin  # pylint: disable=g-import-not-at-top
  # Register the configurables a run config names, so bindings resolve without imports.
  from research.train import sources, trainer  # pylint: disable=unused-import,g-import-not-at-top
  from research.models import ConfigError, TransformerConfig  # pylint: disable=g-import-not-at-top
  gin_files.add_search_paths()
  paths = gin_files.resolve_all(_GIN_FILE.value)
  try:
    gin.parse_config_files_and_bindings(paths, _GIN_BINDINGS.value, finalize_config=False)
  except Exception as e:  # gin raises many types; all mean "this config is wrong"
    cli.usage_error(prog, f'bad gin config: {e}')
  from research.models.peft import PeftError  # pylint: disable=g-import-not-at-top
  try:
    TransformerConfig()  # its checks (types, divisibility) before the run directory exists
  except (ConfigError, PeftError) as e:
    cli.usage_error(prog, e)


_PER_PROCESS = re.compile(r'^\S*initialize\.process_id\s*=.*$', re.MULTILINE)


def _config_without_process_id() -> str:
  """The bound gin config with the one binding that differs from host to host dropped."""
  import gin  # pylint: disable=g-import-not-at-top
  return _PER_PROCESS.sub('', gin.config_str())


def _check_workdir(prog: str, workdir: str) -> None:
  """Fails unless `workdir` is, or can be made, a writable directory. Leaves nothing behind
  (the trainer makes it, once the config has passed its own checks)."""
  target = os.path.abspath(workdir)
  parent = target
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    cli.usage_error(prog, f'--workdir {workdir!r} is not a directory ({parent!r} is a file)')
  try:  # a probe: os.access says yes to root even where nothing can be made (/proc)
    os.rmdir(tempfile.mkdtemp(dir=parent, prefix='.workdir-probe-'))
  except OSError as e:
    what = 'is not writable' if parent == target else 'cannot be created'
    cli.usage_error(prog, f'--workdir {workdir!r} {what}: {e.strerror}')


def _use_compilation_cache(path: str) -> None:
  """Every compiled program, however quick to compile, goes to the cache at `path` (the
  defaults keep only those over a second: most of a tiny model's start-up is programs of
  0.2-1 s each)."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', os.path.abspath(path))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def main(argv: Sequence[str], prog: str = PROG) -> None:
  del argv  # cli.run refuses extra arguments
  cli.show_own_info()
  from research.parallel import host  # pylint: disable=g-import-not-at-top
  host.tune_allocator()  # before JAX allocates (research/parallel/host.py)
  cli.require(prog, gin_file=_GIN_FILE.value, workdir=_WORKDIR.value)
  _load_gin(prog)  # a bad config fails before anything is written
  _check_workdir(prog, _WORKDIR.value)
  if _CACHE_DIR.value:
    _use_compilation_cache(_CACHE_DIR.value)
  from research import parallel  # pylint: disable=g-import-not-at-top
  if _MULTIHOST.value:
    try:
      parallel.initialize()  # after gin (it is configurable), before any JAX backend use
      # Every host must train the same run: compare the configs before anything is written.
      parallel.check_same_config(_config_without_process_id())
    except parallel.DistributedError as e:
      cli.usage_error(prog, e)
  try:
    parallel.make_mesh(parallel.MeshConfig())  # the trainer builds it again, same devices
  except parallel.MeshError as e:
    cli.fail(prog, e)
  # pylint: disable=g-import-not-at-top
  from research.models import ConfigError
  from research.train import trainer
  from research.train.checkpoints import CheckpointError
  from research.train.guard import StabilityError
  # pylint: enable=g-import-not-at-top
  try:
    summary = trainer.train(_WORKDIR.value)
  except cli.UsageError:
    raise  # a zero step count, batch size or learning rate: exit 2 in cli.run
  except CheckpointError as e:  # at start-up or a rollback: nothing is being written then
    host.exit_at_once(f'{prog}: error: {cli.first_line(e)}')
  except (parallel.MeshError, ConfigError, StabilityError, ValueError, TypeError) as e:
    cli.fail(prog, e)
  state = 'preempted: checkpoint saved' if summary.get('preempted') else 'done'
  logging.info('%s at step %s; run directory %s', state, summary.get('step'), _WORKDIR.value)


def run(prog: str = '') -> None:
  """The `research-train` console script (and `python -m research.train`)."""
  prog = prog or cli.prog_name(PROG)
  cli.run(lambda argv: main(argv, prog), prog)
