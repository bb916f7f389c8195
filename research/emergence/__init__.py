"""research.emergence: the emergence probe (issue 6).

  cache      score a model over the eval set -> one .npz of raw outputs per checkpoint
  metrics    per-item metrics from a cache (teacher-forced, greedy, multiple choice)
  sharpness  onset index, BIG-bench breakthroughness / linearity, Clopper-Pearson, bootstrap
  analytic   Schaeffer et al. (2023)'s per-token power law -> exact match, edit distance
  probe      a sweep directory -> emergence.csv, sharpness.csv, figures (plots)
Tasks live in research.data.arithmetic. Nothing here imports research.train.
"""
