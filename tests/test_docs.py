"""The repository explains itself: a short README with the two set-up commands, docs/ whose
links resolve, and code comments whose "docs/method.md section X" names a real section.
Reads text files only (no TensorFlow)."""

from __future__ import annotations

import glob
import os
import re

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, "README.md")
METHOD = os.path.join(REPO_ROOT, "docs", "method.md")
CODE_FOLDERS = ("kerasdistill", "experiments", "benchmarks")
MAX_README_LINES = 120


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _user_docs() -> list[str]:
    """The Markdown a user reads first: the README and docs/."""
    docs = sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))
    assert docs, "docs/ holds no Markdown files"
    return [README, *docs]


def _code_files() -> list[str]:
    return sorted(path for folder in CODE_FOLDERS
                  for path in glob.glob(os.path.join(REPO_ROOT, folder, "**", "*.py"),
                                        recursive=True))


def _fenced_blocks(text: str) -> list[tuple[str, str, int]]:
    """(info string, body, line of the opening fence) of every ``` block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        opening = re.match(r"^(`{3,})(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        fence, start, body = opening.group(1), i, []
        i += 1
        while i < len(lines) and not lines[i].startswith(fence):
            body.append(lines[i])
            i += 1
        blocks.append((opening.group(2).strip(), "\n".join(body), start + 1))
        i += 1
    return blocks


def _without_code(text: str) -> str:
    """The text with fenced blocks and inline code removed (links inside code are code)."""
    text = re.sub(r"^(`{3,}).*?^\1[ \t]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(path: str) -> set[str]:
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _without_fences(_read(path)),
                              flags=re.M):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _without_fences(text: str) -> str:
    return re.sub(r"^(`{3,}).*?^\1[ \t]*$", "", text, flags=re.S | re.M)


def _method_sections() -> set[str]:
    """The numbers of docs/method.md's headings: "## 3. ..." -> 3, "### 2c. ..." -> 2c,
    "### 5.4 ..." -> 5.4."""
    return set(re.findall(r"^#{2,3}\s+(\d+[a-z]?(?:\.\d+)?)\.?\s", _read(METHOD), flags=re.M))


def test_readme_is_short():
    lines = _read(README).splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move detail to docs/")


def test_readme_has_the_main_job_and_the_tests_as_two_plain_blocks_near_the_top():
    blocks = _fenced_blocks(_read(README))
    assert len(blocks) >= 2, "README.md lost its set-up commands"
    (info_job, main_job, line_job), (info_tests, tests, line_tests) = blocks[:2]
    # Plain blocks of one command each, so that copying a block copies just that command.
    assert info_job == "" and info_tests == ""
    assert len(main_job.strip().splitlines()) == 1 and len(tests.strip().splitlines()) == 1
    assert line_job < line_tests <= 40, "the two set-up commands belong near the top"
    for command in (main_job, tests):
        assert command.strip().startswith("pip install -r requirements.txt && "), (
            "each set-up command installs what it needs")
    assert "-m experiments.distill " in main_job and "pytest" not in main_job
    assert "-m pytest" in tests and "experiments." not in tests
    # The test command is the one CI runs (.ci/run), interpreter name aside.
    ci = _read(os.path.join(REPO_ROOT, ".ci", "run"))
    ci_pytest = re.search(r"^python3? (-m pytest .*)$", ci, flags=re.M)
    assert ci_pytest, ".ci/run no longer runs pytest"
    assert tests.strip().endswith(" " + ci_pytest.group(1).strip())


@pytest.mark.parametrize("path", _user_docs(), ids=os.path.basename)
def test_relative_links_resolve(path):
    """Every relative link of the README and docs/ names a file of the repository, and an
    anchor, where it has one, names a heading of the Markdown file it points into."""
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", _without_code(_read(path))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = path if not file_part else os.path.normpath(
            os.path.join(os.path.dirname(path), file_part))
        if not os.path.exists(linked):
            broken.append(f"{target} (no such file)")
        elif not os.path.realpath(linked).startswith(REPO_ROOT + os.sep):
            broken.append(f"{target} (outside the repository)")
        elif anchor and linked.endswith(".md") and anchor not in _anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{os.path.relpath(path, REPO_ROOT)}: {', '.join(broken)}"


def test_method_keeps_the_spec_numbering():
    """Code comments cite these numbers, so every one has a heading of its own."""
    expected = {"1", "2", "2a", "2b", "2c", "3", "4", "5", "6", "7",
                "5.1", "5.2", "5.3", "5.4", "5.5", "5.6"}
    assert expected <= _method_sections(), sorted(expected - _method_sections())


def test_method_references_in_code_name_real_sections():
    sections, missing = _method_sections(), []
    for path in _code_files():
        for number in re.findall(r"docs/method\.md,?\s+sections?\s+(\d+[a-z]?(?:\.\d+)?)",
                                 _read(path)):
            if number not in sections:
                missing.append(f"{os.path.relpath(path, REPO_ROOT)}: section {number}")
    assert not missing, "docs/method.md has no such heading: " + "; ".join(missing)


def test_code_cites_docs_not_the_spec():
    """The spec is not in the repository: code cites docs/method.md's sections instead."""
    left = [f"{os.path.relpath(path, REPO_ROOT)}: {match}" for path in _code_files()
            for match in re.findall(r"\bSPEC,?\s+(?:sections?\s+)?\d[\w.]*", _read(path))]
    assert not left, f"{len(left)} references to SPEC: " + "; ".join(left[:10])


@pytest.mark.parametrize("path", _user_docs(), ids=os.path.basename)
def test_user_docs_name_no_issue_numbers(path):
    """Readers do not have the issue tracker: name the thing, not its issue."""
    found = re.findall(r"(?<![A-Za-z])issues?[\s_#-]*\d+", _read(path), flags=re.I)
    assert not found, f"{os.path.relpath(path, REPO_ROOT)}: {found}"


_COMMAND = re.compile(r"python3? -m (experiments\.[a-z_]+)((?:[ \t]+(?:\\\n)?[^\s`|]+)*)")


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file, module, flag names) of every `python -m experiments.X ...` in the README and
    docs/ (code blocks and inline code alike)."""
    found = []
    for path in [os.path.join(REPO_ROOT, "README.md")] + _user_docs():
        for module, rest in _COMMAND.findall(_read(path)):
            names = re.findall(r"--(?:no)?([a-z_]+)", rest)
            found.append((os.path.relpath(path, REPO_ROOT), module, names))
    return found


def test_every_documented_command_names_only_flags_its_command_has():
    """Each command of the README and docs/ is checked against the flags its module defines
    (the module imported in a fresh interpreter: flags of two commands may share names)."""
    import json
    import subprocess
    import sys
    commands = _documented_commands()
    assert len(commands) >= 10 and {m for _, m, _ in commands} >= {
        "experiments.distill", "experiments.train", "experiments.export", "experiments.reproduce"}
    defined = {}
    for module in sorted({m for _, m, _ in commands}):
        script = (f"import json, {module}; from absl import flags; "
                  f"print(json.dumps(sorted(flags.FLAGS)))")
        result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{module} does not import: {result.stderr[-2000:]}"
        defined[module] = set(json.loads(result.stdout.strip().splitlines()[-1]))
    unknown = [f"{path}: {module} --{name}" for path, module, names in commands
               for name in names if name not in defined[module]]
    assert unknown == []


def test_the_pytorch_example_trains_on_a_ready_set(shared_data_dir):
    """docs/distilled-sets.md's PyTorch example, as written, on the MNIST n = 100 LD set
    (where PyTorch is installed; the suite's requirements leave it out)."""
    pytest.importorskip("torch", reason="PyTorch is not installed (not a dependency)")
    from kerasdistill.sets import find_set
    from tests.scripts.pytorch_example import run
    accuracy = run(find_set("mnist/n100/ld").path, os.path.join(shared_data_dir, "mnist.npz"))
    assert accuracy > 0.8
