r"""lm-evaluation-harness's command line with the project's model type registered
(`research-lmeval`, `python -m research.evaluation`).

  python -m research.evaluation --model research --model_args run_dir=RUN_DIR \
      --tasks research_toy_mc --include_path tests/evaluation/tasks

Every argument is the harness's own (`lm_eval --help`); `--model research` takes
model_args run_dir=DIR [step=N] or hf_model=DIR [tokenizer=DIR], and batch_size,
max_length, max_gen_toks, prefix_lm, seed (research/evaluation/harness.py). A model
argument the adapter cannot serve (an unknown run directory, a task with empty targets)
ends the run with one line, `<prog>: error: ...`, and exit status 1.
"""
import os
import sys

from research import cli


def run() -> None:
  prog = os.path.basename(sys.argv[0]).replace('__main__.py', 'python -m research.evaluation')
  try:
    from lm_eval import __main__ as lm_eval_main  # pylint: disable=g-import-not-at-top
    from research.evaluation import harness  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    cli.fail(prog, f'lm-evaluation-harness is not installed ({cli.first_line(e)}): '
             "pip install -e '.[test]'")
  try:
    lm_eval_main.cli_evaluate()
  except harness.HarnessError as e:
    cli.fail(prog, e)
