"""benchmarks/peft_step.py on tiny shapes: every method trains, and the table's trainable
counts are the formulas' (research.adapt.peft.formula_count)."""
import os
import re
import subprocess
import sys

import pytest

from research import models
from research.adapt import peft

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_peft_step_table_and_bad_flag():
  out = subprocess.run(
      [sys.executable, 'benchmarks/peft_step.py', '--d_model=64', '--num_layers=1',
       '--batch=2', '--length=16', '--steps=1', '--warmup=0', '--rounds=1'],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  rows = dict(re.findall(r'^\| ([^|]+?) \| ([\d,]+) \|', out.stdout, re.MULTILINE))
  base = models.TransformerConfig(d_model=64, num_layers=1, num_heads=1, d_ff=256,
                                  max_length=48)
  assert int(rows['full fine-tuning'].replace(',', '')) == models.count_params(base)['total']
  lora = base.replace(peft=peft.PeftConfig(method='lora', lora_rank=8,
                                           lora_targets=('query', 'value')))
  lora_count = int(rows['LoRA r=8 (q, v)'].replace(',', ''))
  assert lora_count == peft.formula_count(lora) == 8 * (64 + 64) * 2
  assert int(rows['adapters m=64'].replace(',', '')) == 2 * (2 * 64 * 64 + 64 + 64)
  bad = subprocess.run([sys.executable, 'benchmarks/peft_step.py', '--batch=0'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
      'peft_step.py: error: batch must be positive, got 0']
