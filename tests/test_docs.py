"""README.md and docs/*.md against the sources they describe. The facts that drift are kept
true or kept out of the prose: version ranges equal pyproject.toml's, the config groups
equal conf/'s folders, no page states a test count (the suite is the source), README stays
a front page that links every docs page, and README holds the test command CI runs."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself needs tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 260
TEST_COMMAND = "python -m pytest -q"


def pages() -> dict[str, str]:
    """{path relative to the root: text} of README.md and every docs/*.md."""
    files = [README, ROOT / "RESULTS.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in files}


def fenced_blocks(text: str) -> list[list[str]]:
    """The lines of each ``` block."""
    blocks: list[list[str]] = []
    inside = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
            if inside:
                blocks.append([])
        elif inside:
            blocks[-1].append(line)
    return blocks


def prose_lines(text: str) -> list[str]:
    """The lines outside ``` blocks."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def package_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements() -> dict[str, str]:
    """{package: its specifier in pyproject.toml}, extras included; python is requires-python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    declared = {"python": project["requires-python"].replace(" ", "")}
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)",
                         requirement)
        assert match, f"pyproject.toml: cannot read the requirement {requirement!r}"
        spec = match[2].replace(" ", "")
        if spec:
            declared[package_name(match[1])] = spec
    return declared


# `torch>=2.4`, `lightning>=2.4,<3`: a name glued to a comparison and a version
RANGE = re.compile(r"(?<![\w.\-/])([A-Za-z][A-Za-z0-9._-]*?)((?:>=|<=|~=|!=)\d[\w.*]*"
                   r"(?:,(?:>=|<=|~=|!=|<|>)\d[\w.*]*)*)")
PIN = re.compile(r"(?<![\w.\-/])([A-Za-z][A-Za-z0-9._-]*?)==(\d[\w.+]*\w)")


def test_version_ranges_in_the_docs_equal_pyproject():
    declared = declared_requirements()
    wrong = []
    for page, text in pages().items():
        for name, spec in RANGE.findall(text):
            spec = spec.rstrip(".")
            if package_name(name) not in declared:
                wrong.append(f"{page}: {name}{spec}, but pyproject.toml declares no {name}")
            elif set(spec.split(",")) - set(declared[package_name(name)].split(",")):
                wrong.append(f"{page}: {name}{spec}, but pyproject.toml says "
                             f"{name}{declared[package_name(name)]}")
    assert not wrong, "version ranges that disagree with pyproject.toml:\n" + "\n".join(wrong)


def test_pinned_installs_in_the_docs_satisfy_pyproject():
    declared = declared_requirements()
    wrong = [f"{page}: {name}=={version} is outside pyproject.toml's {name}"
             f"{declared[package_name(name)]}"
             for page, text in pages().items() for name, version in PIN.findall(text)
             if package_name(name) in declared
             and Version(version) not in SpecifierSet(declared[package_name(name)])]
    assert not wrong, "\n".join(wrong)


def test_readme_lists_exactly_the_config_groups_under_conf():
    row = re.search(r"^\| `conf/` \| (.*) \|$", README.read_text(encoding="utf-8"), re.M)
    assert row, "README's Layout has no `conf/` row"
    listed = re.search(r"config groups: ([^;|]*)", row[1])
    assert listed, f"README's `conf/` row lists no 'config groups: a, b, ...;': {row[1]!r}"
    named = sorted(group.strip() for group in listed[1].split(","))
    folders = sorted(p.name for p in (ROOT / "conf").iterdir()
                     if p.is_dir() and not p.name.startswith(("_", ".")))
    assert named == folders, (
        f"README lists the config groups {named}; conf/ holds {folders} "
        f"(not listed: {sorted(set(folders) - set(named))}, "
        f"listed but absent: {sorted(set(named) - set(folders))})")


# "546 tests", "9 slow end-to-end tests", "357 passed", "2 skipped"
TEST_COUNT = re.compile(r"\b\d+(?:,\d{3})*\s+(?:passed|failed|skipped|deselected|xfailed|xpassed)\b"
                        r"|\b\d+(?:,\d{3})*\s+(?:[a-z-]+\s+){0,2}tests\b", re.I)


def test_no_page_states_a_test_count():
    found = [f"{page}: {' '.join(match.split())!r}" for page, text in pages().items()
             for match in TEST_COUNT.findall(text)]
    assert not found, ("test counts in the prose go stale with the next test (the suite is "
                       "the source: python -m pytest --collect-only -q):\n" + "\n".join(found))


def test_readme_is_a_front_page_that_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    lines = len(text.splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines (at most {MAX_README_LINES}): move depth to docs/")
    linked = {target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", text)}
    linked_docs = {t for t in linked if t.startswith("docs/") and t.endswith(".md")}
    missing = sorted(t for t in linked_docs if not (ROOT / t).is_file())
    assert not missing, f"README links docs pages that do not exist: {missing}"
    pages_on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    unlinked = sorted(pages_on_disk - linked_docs)
    assert not unlinked, f"docs pages README does not link: {unlinked}"


def anchors(text: str) -> set[str]:
    """GitHub's ids of a page's headings: lower case, punctuation dropped, spaces to -."""
    seen: dict[str, int] = {}
    for line in prose_lines(text):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading[1].lower()).replace(" ", "-")
            seen[slug] = seen.get(slug, -1) + 1
            if seen[slug]:
                seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_relative_links_and_their_anchors_resolve():
    broken = []
    for page, text in pages().items():
        for target in re.findall(r"\]\(([^)\s]+)\)", "\n".join(prose_lines(text))):
            if "://" in target or target.startswith("mailto:"):
                continue
            path, _, anchor = target.partition("#")
            file = (ROOT / page).parent / path if path else ROOT / page
            if not file.exists():
                broken.append(f"{page}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and \
                    anchor not in anchors(file.read_text(encoding="utf-8")):
                broken.append(f"{page}: {target} (no such heading in {path or page})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_holds_the_fenced_test_command_ci_runs():
    fenced = [line.strip() for block in fenced_blocks(README.read_text(encoding="utf-8"))
              for line in block]
    assert TEST_COMMAND in fenced, (
        f"README has no fenced line {TEST_COMMAND!r} (.ci/run runs README's test command); "
        f"its fenced pytest lines: {[line for line in fenced if 'pytest' in line]}")


def face_commands(text: str) -> list[str]:
    """Every `python -m emotion_lab.<module> ...` command: fenced (continuation lines joined)
    or in an inline code span."""
    joined = []
    for block in fenced_blocks(text):
        joined += "\n".join(block).replace("\\\n", " ").splitlines()
    joined += re.findall(r"`([^`\n]*python -m emotion_lab\.[^`\n]*)`", text)
    return [line[line.index("python -m emotion_lab."):] for line in joined
            if "python -m emotion_lab." in line]


def test_face_commands_name_real_modules_and_take_key_values():
    """`python -m emotion_lab.<face> key=value ...`: no --flags, no positional arguments
    (`-m` starts a sweep). Test tools under emotion_lab.testing keep their own arguments."""
    wrong = []
    for page, text in pages().items():
        for command in face_commands(text):
            module = command.split()[2]
            if "<" in module:  # `python -m emotion_lab.<face>`: the convention itself
                continue
            # a placeholder standing for arguments (`<the run's overrides>`) is key=values
            line = re.sub(r"(?<=\s)<[^<>]*>(?=\s|$)", "key=value", command)
            words = shlex.split(re.sub(r"<[^<>]*>", "X", line), comments=True)
            if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
                wrong.append(f"{page}: {command!r}: no module {module}")
            elif not module.startswith("emotion_lab.testing."):
                odd = [w for w in words[3:] if w != "-m" and "=" not in w]
                if odd:
                    wrong.append(f"{page}: {command!r}: {odd} are not key=value")
    assert not wrong, "commands off the command-line convention:\n" + "\n".join(wrong)
