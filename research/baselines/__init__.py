"""Statistical baselines trained and scored on the same corpus splits as the neural runs.

  from research.baselines import ngram
  model = ngram.KneserNeyLM.fit(ngram.load_split('python_stdlib', 'train'), order=6)

Imports `data` (to read a split) and `runs` (atomic writers); nothing imports it back: the
scaling figures take its numbers as a JSON file (research-fit --baseline_json).
"""
