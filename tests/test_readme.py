"""The README and docs/ stay true to the repository: every file a README command names
exists, every relative link (and its #anchor) resolves, and the README stays a short guide
in the words of a reader's document."""
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, 'README.md')
DOCS = os.path.join(REPO, 'docs')
MAX_README_LINES = 260

# A repository file named in a command: a relative path with one of these endings.
_FILE_TOKEN = re.compile(
    r'(?<![\w/.~$-])((?:[\w.-]+/)*[\w.-]+\.(?:gin|py|ipynb|png|sh|json|csv|md))\b')
_MODULE = re.compile(r'python3? -m ([\w.]+)')
_FENCE = re.compile(r'^```(\w*)\s*\n(.*?)^```\s*$', re.M | re.S)
_LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
_BANNED = (r'this[ ]VM', r'ad[ ]hoc', r'\bissues?\b')


def _read(path):
  with open(path, encoding='utf-8') as f:
    return f.read()


def _markdown_files():
  files = [README]
  for root, _, names in os.walk(DOCS):
    files += [os.path.join(root, n) for n in sorted(names) if n.endswith('.md')]
  return files


def _commands(path=README):
  """Every command line of a markdown file: all lines of ```bash blocks, and the `$ `
  lines of the other blocks (a command shown with its output)."""
  commands = []
  for lang, body in _FENCE.findall(_read(path)):
    joined = re.sub(r'\\\n\s*', ' ', body)  # continuation lines
    for line in joined.splitlines():
      line = line.strip()
      if lang == 'bash' and line and not line.startswith('#'):
        commands.append(line)
      elif line.startswith('$ '):
        commands.append(line[2:])
  return commands


def _files_named(command):
  """Repository paths named in a command (absolute and home paths are not the repo's)."""
  command = command.split(' # ')[0]  # a trailing comment
  paths = [m.group(1) for m in _FILE_TOKEN.finditer(command)]
  for module in _MODULE.findall(command):
    if module.split('.')[0] in ('tests', 'research', 'benchmarks', 'experiments'):
      as_file = module.replace('.', '/')
      paths.append(as_file + '.py' if not os.path.isdir(os.path.join(REPO, as_file))
                   else as_file)
  return [p for p in paths if not p.startswith(('/', '~'))]


def test_readme_commands_exist():
  assert _commands(), 'no commands found in README.md'


@pytest.mark.parametrize('command', _commands())
def test_files_named_in_readme_commands_exist(command):
  missing = [p for p in _files_named(command) if not os.path.exists(os.path.join(REPO, p))]
  assert not missing, f'README command names files that do not exist: {missing}\n{command}'


@pytest.mark.parametrize('path', _markdown_files()[1:], ids=lambda p: os.path.relpath(p, REPO))
def test_files_named_in_docs_commands_exist(path):
  missing = [(p, command) for command in _commands(path) for p in _files_named(command)
             if not os.path.exists(os.path.join(REPO, p))]
  assert not missing, f'{os.path.relpath(path, REPO)}: commands name missing files {missing}'


def test_readme_is_a_short_guide():
  lines = _read(README).count('\n')
  assert lines <= MAX_README_LINES, (
      f'README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/')


@pytest.mark.parametrize('path', _markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_no_lab_notebook_wording(path):
  text = _read(path)
  found = [w for w in _BANNED if re.search(w, text, re.I)]
  assert not found, f'{os.path.relpath(path, REPO)} says {found}'


def test_readme_links_stay_inside_the_repository():
  links = _LINK.findall(_read(README))
  assert not [l for l in links if '../' in l]


def _slug(heading):
  """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
  heading = re.sub(r"[`*]", "", heading.strip()).lower()
  return re.sub(r'[^\w\- ]', '', heading).replace(' ', '-')


def _anchors(path):
  text = _FENCE.sub('', _read(path))
  return {_slug(m) for m in re.findall(r'^#{1,6}\s+(.*?)\s*#*\s*$', text, re.M)}


@pytest.mark.parametrize('path', _markdown_files(), ids=lambda p: os.path.relpath(p, REPO))
def test_relative_links_resolve(path):
  broken = []
  text = _FENCE.sub('', _read(path))
  for target in _LINK.findall(text):
    if re.match(r'^[a-z][a-z0-9+.-]*:', target):  # http:, https:, mailto:
      continue
    file_part, _, anchor = target.partition('#')
    resolved = (os.path.normpath(os.path.join(os.path.dirname(path), file_part))
                if file_part else path)
    if os.path.relpath(resolved, REPO).startswith('..'):
      broken.append(f'{target} (outside the repository)')
    elif not os.path.exists(resolved):
      broken.append(f'{target} (no such file)')
    elif anchor and resolved.endswith('.md') and anchor not in _anchors(resolved):
      broken.append(f'{target} (no such heading)')
  assert not broken, f'{os.path.relpath(path, REPO)}: broken links {broken}'


# --- every flag a README command passes is one its program defines ----------------------

_CONSOLE_SCRIPT = re.compile(r"'(research-[\w-]+) = ([\w.]+):run'")
_FLAG = re.compile(r'(?:^|\s)["\']?--(?:no)?([a-z_]\w*)')


def _console_scripts():
  return dict(_CONSOLE_SCRIPT.findall(_read(os.path.join(REPO, 'setup.py'))))


def _program(command, scripts):
  """(argv prefix that runs a command's program, the words after it), or None for a shell
  command that is not one of the project's absl programs (pip, venv, bash)."""
  words = command.split()
  for i, word in enumerate(words):
    if word in scripts:  # a console script runs its package's __main__
      return ('-m', scripts[word].rsplit('.main', 1)[0]), words[i + 1:]
    if word in ('python', 'python3') and i + 1 < len(words):
      nxt = words[i + 1]
      if nxt == '-m' and i + 2 < len(words) and words[i + 2].startswith('research'):
        return ('-m', words[i + 2]), words[i + 3:]
      if nxt.startswith(('experiments/', 'benchmarks/')) and nxt.endswith('.py'):
        return (nxt,), words[i + 2:]
  return None


def _readme_programs():
  """{argv prefix: flags} over the project's own programs in README commands (a bare word
  right after the program is a subcommand, e.g. lm-eval's `run`, and joins the prefix)."""
  scripts, found = _console_scripts(), {}
  for line in _commands():
    for command in line.split(' # ')[0].split('&&'):
      parsed = _program(command, scripts)
      if parsed is not None:
        prog, rest = parsed
        if rest and re.fullmatch(r'[a-z]+', rest[0]):
          prog, rest = prog + (rest[0],), rest[1:]
        found.setdefault(prog, set()).update(_FLAG.findall(' ' + ' '.join(rest)))
  return found


def test_readme_names_console_scripts_that_setup_py_installs():
  scripts = _console_scripts()
  assert {'research-train', 'research-sweep', 'research-fit', 'research-generate',
          'research-probe'} <= set(scripts)
  for word in set(re.findall(r'\bresearch-[a-z]+\b', _read(README))):
    assert word in scripts, word


@pytest.mark.parametrize('prog,flags', sorted(_readme_programs().items()))
def test_every_readme_flag_is_defined_by_its_program(prog, flags):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  run = lambda flag: subprocess.run([sys.executable, *prog, flag], cwd=REPO,
                                    capture_output=True, text=True, timeout=300)
  out = run('--helpfull')
  if prog[-1] == 'run':  # lm-evaluation-harness's argparse command line (research.evaluation)
    out = run('--help')
    assert out.returncode == 0, out.stderr[-2000:]
  else:  # absl's --helpfull exits 1 after the listing
    assert out.returncode in (0, 1) and 'absl.flags' in out.stdout, out.stderr[-2000:]
  defined = set(re.findall(r'--(?:\[no\])?(\w+)', out.stdout))
  assert flags <= defined, (prog, sorted(flags - defined))
