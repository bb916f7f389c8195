"""research.emergence: the emergence probe.

  cache       score a model over the eval set -> one .npz of raw outputs per checkpoint
  metrics     per-item metrics from a cache (teacher-forced, greedy, multiple choice)
  sharpness   onset index, BIG-bench breakthroughness / linearity, Clopper-Pearson, bootstrap
  analytic    Schaeffer et al. (2023)'s per-token power law -> exact match, edit distance
  scoring     the usable runs of a sweep, their checkpoints scored into caches
  tables      emergence.csv and sharpness.csv from the caches (`tables.load` reads one back)
  resolution  zero cells scored again on more items, against chance (resolution.csv)
  checks      what the probe checks of its own output (checks.json)
  kshot       k-shot prompts (k distinct demonstrations, never the query) and accuracy
              against k by every metric of the probe
  probe       a sweep directory -> all of the above, and the figures (plots)
  main        the command line (`python -m research.emergence`, `research-probe`)
Tasks live in research.data.arithmetic; run directories are read with research.runs.
Nothing here imports research.train.
"""
