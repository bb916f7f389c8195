"""research.evaluation: the project's models under the evaluation tools others use.

  harness   an lm-evaluation-harness model type, `--model research` (run directories and
            Hugging Face weights converted with research.models.from_hf); imports lm_eval
  main      the command line (`python -m research.evaluation`, `research-lmeval`): the
            harness's own command line with the `research` model type registered

Nothing here is imported by the rest of the library, and importing this package does not
import lm_eval (a test-only dependency): only `harness` does.
"""
