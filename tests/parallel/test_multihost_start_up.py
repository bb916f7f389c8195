"""`--multihost` start-up: bad input fails with one line and exit 2 before anything is
written; CPU processes get gloo's collectives without being told."""
import os
import subprocess
import sys
import textwrap

import numpy as np

from research.parallel import distributed
from research.train import sources, synthetic
from tests.parallel import multiprocess as mp

# No cluster environment that jax could detect a coordinator from.
_NO_CLUSTER = {k: v for k, v in os.environ.items()
               if not k.startswith(('SLURM_', 'OMPI_', 'PMI_', 'TPU_', 'MEGASCALE_'))}


def _train(args, env=None):
  return subprocess.run([sys.executable, '-m', 'research.train', *args], cwd=mp.REPO,
                        env={**(env or os.environ), 'PYTHONPATH': mp.REPO},
                        capture_output=True, text=True, timeout=300)


def _one_error_line(out: str) -> str:
  assert 'Traceback' not in out, out
  lines = mp.error_lines(out)
  assert len(lines) == 1, out
  return lines[0]


def test_multihost_without_a_coordinator_fails_with_one_line(tmp_path):
  workdir = tmp_path / 'run'
  result = _train(['--multihost', f'--gin_file={mp.write_gin(str(tmp_path))}',
                   f'--workdir={workdir}'], env=_NO_CLUSTER)
  assert result.returncode == 2, result.stderr
  assert 'no coordinator given and none detected' in _one_error_line(result.stderr)
  assert not workdir.exists()


def test_a_process_id_outside_the_job_fails_with_one_line(tmp_path):
  workdir = tmp_path / 'run'
  result = _train(['--multihost', f'--gin_file={mp.write_gin(str(tmp_path))}',
                   f'--workdir={workdir}', f"--gin_bindings=initialize.coordinator_address="
                   f"'localhost:{mp.free_port()}'", '--gin_bindings=initialize.num_processes=2',
                   '--gin_bindings=initialize.process_id=2'])
  assert result.returncode == 2, result.stderr
  assert 'process_id 2 is outside [0, 2)' in _one_error_line(result.stderr)
  assert not workdir.exists()


def test_hosts_with_different_configs_refuse_to_start(tmp_path):
  workdir = str(tmp_path / 'run')
  procs = mp.start(mp.write_gin(str(tmp_path)), workdir, 2,
                   per_process=lambda i: ['trainer.train.log_every = 2'] if i else [])
  for code, out in mp.finish(procs, timeout=120):
    assert code == 2, out
    assert 'the gin config differs across processes' in _one_error_line(out)
  assert not os.path.exists(workdir)  # no checkpoint, nothing at all


_COLLECTIVES = textwrap.dedent('''
    import sys, jax
    from research import parallel
    jax.config.update('jax_cpu_collectives_implementation', None)  # no implementation
    parallel.initialize(coordinator_address=sys.argv[1], num_processes=2,
                        process_id=int(sys.argv[2]), initialization_timeout=60)
    parallel.check_same_config('the same text')
    print('any', parallel.any_process(sys.argv[2] == '1'), parallel.any_process(False))
    print('collectives', jax.config.jax_cpu_collectives_implementation)
''')


def test_initialize_selects_gloo_collectives_on_cpu():
  address = f'localhost:{mp.free_port()}'
  procs = [subprocess.Popen([sys.executable, '-c', _COLLECTIVES, address, str(i)],
                            cwd=mp.REPO, env={**os.environ, 'PYTHONPATH': mp.REPO},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  for code, out in mp.finish(procs, timeout=120):
    assert code == 0, out
    # The flag raised on process 1 only is seen on both.
    assert 'any True False' in out and 'collectives gloo' in out, out


def _rows(make, shards):
  out = []
  for index in range(shards):
    source = make(index, shards)
    batches = [next(source) for _ in range(3)]
    out.append((batches, source.get_state()))
    if hasattr(source, 'close'):
      source.close()
  return out


def _assert_host_invariant(make):
  (whole, state), = _rows(make, 1)
  halves = _rows(make, 2)
  assert halves[0][1] == halves[1][1] == state  # one data state, whatever the host count
  for step in range(3):
    for key, value in whole[step].items():
      np.testing.assert_array_equal(
          np.concatenate([halves[0][0][step][key], halves[1][0][step][key]]), value)
    assert not np.array_equal(whole[step]['decoder_input_tokens'][:4],
                              whole[step]['decoder_input_tokens'][4:])


def test_synthetic_global_batches_do_not_depend_on_the_host_count():
  _assert_host_invariant(lambda i, n: synthetic.synthetic_source(
      'decoder', 8 // n, {'targets': 16}, seed=3, shard_index=i, num_shards=n))


def test_pipeline_global_batches_do_not_depend_on_the_host_count():
  _assert_host_invariant(lambda i, n: sources.pipeline_source(
      'decoder', 8 // n, {'targets': 32}, seed=3, shard_index=i, num_shards=n))


def test_config_digest_tells_configs_apart():
  assert np.array_equal(distributed.config_digest('a = 1'), distributed.config_digest('a = 1'))
  assert not np.array_equal(distributed.config_digest('a = 1'),
                            distributed.config_digest('a = 2'))


def test_a_data_state_that_differs_across_hosts_is_never_checkpointed(tmp_path):
  workdir = str(tmp_path / 'run')
  procs = mp.start(mp.write_gin(str(tmp_path)), workdir, 2,
                   bindings=['trainer.train.batch_source = @per_host_state_source'])
  for code, out in mp.finish(procs, timeout=120):
    assert code == 1, out
    assert 'the data state of process 1 differs' in _one_error_line(out)
  assert mp.checkpoint_steps(workdir) == []
