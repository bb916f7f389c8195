"""The allocator settings keep a freed large block mapped, so reusing it costs no page faults."""
import subprocess
import sys
import textwrap

import pytest

from research.parallel import host

# In a fresh process: malloc, fill and free a 256 MiB block (what XLA:CPU does with a train
# step's temporaries), then count the minor page faults of doing it again.
_PROBE = textwrap.dedent('''
    import ctypes, resource, sys
    from research.parallel import host
    tuned = host.tune_allocator() if sys.argv[1] == '1' else False
    libc = ctypes.CDLL('libc.so.6')
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    size = 256 << 20
    def step():
      block = libc.malloc(size)
      ctypes.memset(block, 1, size)
      libc.free(block)
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    step()
    print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
''')


def _faults(tune: bool):
  out = subprocess.run([sys.executable, '-c', _PROBE, '1' if tune else '0'], check=True,
                       capture_output=True, text=True).stdout.split()
  return out[0] == 'True', int(out[1])


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc mallopt')
def test_tuned_allocator_reuses_a_freed_large_block_without_page_faults():
  tuned, faults = _faults(True)
  assert tuned
  assert faults < 1000  # 256 MiB is 65,536 pages of 4 KiB
  _, untuned = _faults(False)
  assert untuned > 30000  # glibc's default: a fresh mmap each time, faulted in again


def test_tune_allocator_can_be_turned_off(monkeypatch):
  monkeypatch.setattr(host, '_done', False)
  monkeypatch.setenv('RESEARCH_TUNE_MALLOC', '0')
  assert not host.tune_allocator()
