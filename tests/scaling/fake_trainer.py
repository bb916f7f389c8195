"""A stand-in for `python -m research.train` in the sweep tests: same flags, same contract
(SIGTERM -> checkpoint and exit 0; a restart resumes from the checkpoint; COMPLETED last),
a step is a sleep of FAKE_TRAINER_STEP_S seconds.

Each start appends a line to <workdir>/fake_starts.jsonl: its first step, and whether the
preemption signal is ignored (a job's trainer must not die of it).
"""
import json
import os
import signal
import sys
import time

from research import runs


def main(argv):
  workdir = next(a.split('=', 1)[1] for a in argv if a.startswith('--workdir='))
  steps = 20
  for arg in argv:
    if arg.startswith('--gin_bindings=TRAIN_STEPS'):
      steps = int(arg.split('=')[-1])
  step_s = float(os.environ.get('FAKE_TRAINER_STEP_S', '0.2'))
  ckpt = os.path.join(workdir, 'fake_checkpoint.json')
  stop = []
  signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
  step = 0
  if os.path.exists(ckpt):
    with open(ckpt) as f:
      step = json.load(f)['step']
  with open(os.path.join(workdir, 'fake_starts.jsonl'), 'a') as f:
    f.write(json.dumps({'pid': os.getpid(), 'start_step': step, 'multihost': '--multihost' in argv,
                        'usr2_ignored': signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN})
            + '\n')
  print(f'fake trainer from step {step} of {steps}', flush=True)
  while step < steps:
    time.sleep(step_s)
    step += 1
    with open(os.path.join(workdir, 'fake_progress'), 'w') as f:
      f.write(str(step))
    if stop:
      runs.write_json_atomic(ckpt, {'step': step})
      print(f'checkpointed at step {step}', flush=True)
      return 0
  runs.mark_complete(workdir, {'step': step})
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
