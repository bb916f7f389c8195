"""Test-wide settings.

XLA:CPU's LLVM backend at -O0 compiles the many tiny test programs about 40% faster
(CPU seconds measured on this suite's model tests); tests compare runs made under the same
flags, so numerics checks are unaffected. Child processes inherit the flag.

The allocator settings of research/parallel/host.py apply to the test process too (the
entry points that tests start as subprocesses set them themselves).
"""
import os

_FLAG = '--xla_backend_optimization_level=0'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG).strip()

from research.parallel import host  # noqa: E402  (after XLA_FLAGS)

host.tune_allocator()


import gin  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _gin_cleared_after_each_test():
  """A test's gin bindings (the trainer tests bind a tiny TransformerConfig) must not leak
  into the next test: tests/models/test_attention.py failed after tests/train had run."""
  yield
  gin.clear_config()
