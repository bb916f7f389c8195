"""The few lines a person reads at the end of a sweep: a and b with their intervals, N_opt,
D_opt and tokens per parameter at each budget, and everything left out, with why.

Built from the fits.json dict (report.to_json), so the same text can be printed by the job that
fitted and recovered later from the file alone.
"""
from typing import Dict, List

APPROACHES = (('approach1', 'Approach 1 (training-curve envelope)'),
              ('approach2', 'Approach 2 (IsoFLOP parabolas)'),
              ('approach3', 'Approach 3 (parametric L(N, D))'))


def _ci(e: Dict) -> str:
  lo, hi = e['ci95']
  return f'{e["value"]:.3f} [{lo:.3f}, {hi:.3f}]'


def _budget_lines(opt: Dict[str, Dict]) -> List[str]:
  out = []
  for c, v in sorted(opt.items(), key=lambda kv: float(kv[0])):
    n, d, r = v['N_opt'], v['D_opt'], v['tokens_per_param']
    out.append(f'    C={float(c):.3g}: N_opt={n["value"]:.3g} [{n["ci95"][0]:.3g}, '
               f'{n["ci95"][1]:.3g}]  D_opt={d["value"]:.3g} [{d["ci95"][0]:.3g}, '
               f'{d["ci95"][1]:.3g}]  D/N={r["value"]:.1f} [{r["ci95"][0]:.1f}, '
               f'{r["ci95"][1]:.1f}]')
  return out


def summary_text(fits: Dict) -> str:
  """The summary of a fits.json dict as printable text (95% bootstrap intervals in brackets)."""
  src = fits.get('source', {})
  lines = [f'scaling fits of {src.get("results", "?")}: {src.get("n_runs", "?")} runs, '
           f'{src.get("n_bootstrap", "?")} bootstrap replicates (seed {src.get("seed", "?")}); '
           'N_opt ~ C^a, D_opt ~ C^b, 95% intervals in brackets']
  ch = fits.get('chinchilla', {})
  for key, title in APPROACHES:
    if key not in ch:
      why = fits.get('skipped', {}).get(key, 'not fitted')
      lines.append(f'{title}: skipped: {why}')
      continue
    f = ch[key]
    extra = ''
    if key == 'approach3':
      extra = (f'  alpha={_ci(f["alpha"])}  beta={_ci(f["beta"])}  E={_ci(f["E"])}')
    lines.append(f'{title}: a={_ci(f["a"])}  b={_ci(f["b"])}{extra}')
    if key == 'approach2' and 'budgets_used' in f:
      lines.append('  budgets used: ' + ', '.join(f'{c:.3g}' for c in f['budgets_used']))
    lines += _budget_lines(f.get('optimal_at_budget', {}))
  km = fits.get('kaplan', {})
  if 'N_opt_exponent' in km:
    lines.append(f'Kaplan N_opt ~ C^(alpha_C/alpha_N): {_ci(km["N_opt_exponent"])}')
  conv = fits.get('conventions')
  if conv:
    for name, r in conv.get('approaches', {}).items():
      lines.append(f'conventions, {name}: a Chinchilla (total N, 6ND)={_ci(r["a_chinchilla"])}  '
                   f'a Kaplan (non-embedding N, 6 N_nonembed D)={_ci(r["a_kaplan"])}  '
                   f'shift={_ci(r["shift"])}: {r["direction"]}'
                   + (' (as Pearce & Song 2024 predict)' if r['as_pearce_song_predict'] else
                      ' (Pearce & Song 2024 predict Kaplan larger)'))
    for name, why in conv.get('skipped', {}).items():
      lines.append(f'conventions, {name}: skipped: {why}')
  excl = fits.get('excluded', {})
  for c, why in sorted(excl.get('approach2_budgets', {}).items(), key=lambda kv: float(kv[0])):
    lines.append(f'left out of Approach 2: budget {float(c):.3g}: {why}')
  if excl.get('repeated_data_check'):
    lines.append(f'repeated data: {excl["repeated_data_check"]}')
  for run_id, why in sorted(excl.get('runs', {}).items()):
    lines.append(f'left out of every fit: run {run_id}: {why}')
  for name, why in fits.get('skipped', {}).items():
    if name not in dict(APPROACHES):
      lines.append(f'skipped {name}: {why}')
  return '\n'.join(lines)
