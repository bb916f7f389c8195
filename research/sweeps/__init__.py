"""Sweeps: a gin grid of (size x budget x family x objective x seed) -> training runs.

Stages: (1) `SweepConfig` (gin, grid.py) names the grid; (2) `plan()` (plan.py) turns it into
`Point`s, each with a deterministic run_id, its TRAIN_STEPS and the gin bindings of its run;
(3) `run_sweep()` (launch.py) starts `python -m research.train --workdir=SWEEP_DIR/<run_id>`
for each point through an executor (executors.py: local child processes, or submitit for
slurm, as job arrays if asked, requeued from a checkpoint at a time limit), K at a time,
printing progress. The command line is `python -m research.sweeps`
(main.py). The fits of the finished runs are research.scaling's; this package only launches.

  from research import sweeps
  points, skipped = sweeps.plan(sweeps.SweepConfig(sizes=..., flop_budgets=(1e12,)))
"""
from research.sweeps.executors import JOBS_FILE, LOCK_FILE, LOG_FILE, SlurmConfig, TrainerJob
from research.sweeps.executors import check_executor, make_executor
from research.sweeps.grid import (Point, PowerLawLR, SweepConfig, SweepError,
                                   depth_width_sizes, power_law_lr)
from research.sweeps.grid import make_run_id
from research.sweeps.launch import COMPLETION_MARKER, ERROR_FILE, EVENTS_FILE, PLAN_FILE
from research.sweeps.launch import POINT_FILE, EtaModel, run_sweep
from research.sweeps.plan import command, frontier_warnings, local_device_count
from research.sweeps.plan import launch_order, packed_wall, per_token_cost, plan, plan_notes
from research.sweeps.plan import load_config, resolve_run
