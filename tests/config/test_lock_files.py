"""The pinned, hashed requirements (requirements/*.txt, made by ``make lock``)
agree with pyproject.toml: each lock pins every dependency it is made for at a
version the dependency's specifier allows, with a hash, and the three locks
share their pins. A dependency added or tightened without ``make lock`` fails
here, before an install from the stale lock would miss it."""

import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])

# Each lock and the extras it is made for (the Makefile's `lock` target), from
# the smallest to the largest.
LOCKS = {
    "production.txt": (),
    "dev.txt": ("dev",),
    "bench.txt": ("dev", "bench"),
}
PINNED_LINE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")


def pins(lock: str) -> dict[NormalizedName, Version]:
    """The lock's ``name==version`` entries; every one must carry a hash."""
    entries: list[list[str]] = []
    for line in (REQUIREMENTS / lock).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            if line[0].isspace():
                entries[-1].append(line)
            else:
                entries.append([line])
    pinned = {}
    for first, *rest in entries:
        match = PINNED_LINE.match(first)
        assert match, f"{lock}: {first!r} is not pinned with =="
        assert any("--hash=sha256:" in line for line in [first, *rest]), (
            f"{lock}: {first!r} has no hash"
        )
        pinned[canonicalize_name(match["name"])] = Version(match["version"])
    return pinned


def declared(extras: tuple[str, ...]) -> Iterator[Requirement]:
    """What pyproject asks for with ``extras`` (the project's own extras, as in
    ``storefront[test,lint]``, expanded), plus the build backend and the
    installer (requirements/installer.in), which the locks hold too."""
    project = PYPROJECT["project"]
    lines = [*project["dependencies"], *PYPROJECT["build-system"]["requires"]]
    lines += [
        line.strip()
        for line in (REQUIREMENTS / "installer.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pending, expanded = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in expanded:
            continue
        expanded.add(extra)
        for line in project["optional-dependencies"][extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == PROJECT:
                pending += requirement.extras
            else:
                lines.append(line)
    for line in lines:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            yield requirement


def extra_requirements(requirement: Requirement, version: Version) -> Iterator[Requirement]:
    """What ``requirement``'s extras (``psycopg[binary,pool]``) add, read from the
    installed distribution when it is the pinned version (else pip's
    --require-hashes, which refuses any dependency missing from the lock, is the check)."""
    if not requirement.extras:
        return
    try:
        installed = metadata.distribution(requirement.name)
    except metadata.PackageNotFoundError:
        return
    if Version(installed.version) != version:
        return
    for line in installed.requires or []:
        dependency = Requirement(line)
        marker = dependency.marker
        # Only what the extras add: not what the package always needs.
        if (
            marker is not None
            and any(marker.evaluate({"extra": extra}) for extra in requirement.extras)
            and not marker.evaluate({"extra": ""})
        ):
            yield dependency


def unmet(lock: str, extras: tuple[str, ...]) -> list[str]:
    pinned = pins(lock)
    problems = []
    for requirement in declared(extras):
        name = canonicalize_name(requirement.name)
        if name not in pinned:
            problems.append(f"{requirement} is not in {lock}")
            continue
        if not requirement.specifier.contains(pinned[name], prereleases=True):
            problems.append(f"{requirement}: {lock} pins {pinned[name]}")
            continue
        for dependency in extra_requirements(requirement, pinned[name]):
            dependency_name = canonicalize_name(dependency.name)
            if dependency_name not in pinned:
                problems.append(f"{dependency} (for {requirement}) is not in {lock}")
            elif not dependency.specifier.contains(pinned[dependency_name], prereleases=True):
                problems.append(f"{dependency} (for {requirement}): {lock} pins a different one")
    return problems


@pytest.mark.parametrize(("lock", "extras"), LOCKS.items())
def test_each_lock_pins_with_a_hash_every_dependency_pyproject_asks_for(lock, extras):
    problems = unmet(lock, extras)
    assert not problems, "The lock is stale; run `make lock` and commit requirements/:\n  " + (
        "\n  ".join(problems)
    )


def test_production_installs_the_versions_the_tests_ran_against():
    production, dev, bench = (pins(lock) for lock in LOCKS)
    assert {name: dev.get(name) for name in production} == production
    assert {name: bench.get(name) for name in dev} == dev


def test_the_check_sees_a_dependency_added_or_tightened_without_make_lock(monkeypatch):
    """The check itself: pyproject ahead of the locks is reported."""
    project = {**PYPROJECT["project"]}
    project["dependencies"] = [*project["dependencies"], "not-locked-yet>=1", "django>=99"]
    monkeypatch.setitem(PYPROJECT, "project", project)
    problems = unmet("production.txt", ())
    assert "not-locked-yet>=1 is not in production.txt" in problems
    assert any(problem.startswith("django>=99: production.txt pins") for problem in problems)


VIA_ROOTS = ("storefront (pyproject.toml)", "-r requirements/installer.in")


def parents(lock: str) -> dict[NormalizedName, set[str]]:
    """What pip-compile wrote each pin is there for (its ``# via`` lines):
    package names, or one of ``VIA_ROOTS``; constraint files left out."""
    found: dict[NormalizedName, set[str]] = {}
    current: NormalizedName | None = None
    for line in (REQUIREMENTS / lock).read_text().splitlines():
        match = PINNED_LINE.match(line)
        if match:
            current = canonicalize_name(match["name"])
            found[current] = set()
            continue
        text = line.strip()
        if current is None or not text.startswith("#"):
            continue
        text = text.lstrip("#").strip()
        if text.startswith("via"):
            text = text[len("via") :].strip()
        if not text or text.startswith("-c "):
            continue
        found[current].add(text if text in VIA_ROOTS else str(canonicalize_name(text)))
    return found


def unjustified(lock: str, extras: tuple[str, ...]) -> list[str]:
    """Pins that nothing pyproject asks for (with ``extras``) needs: each must
    be asked for itself, or be needed by a pin that is."""
    wanted = {canonicalize_name(requirement.name) for requirement in declared(extras)}
    graph = parents(lock)
    justified = {
        name
        for name, via in graph.items()
        if (VIA_ROOTS[0] in via and name in wanted) or VIA_ROOTS[1] in via
    }
    while True:
        more = {name for name, via in graph.items() if name not in justified and via & justified}
        if not more:
            break
        justified |= more
    return sorted(set(graph) - justified)


@pytest.mark.parametrize(("lock", "extras"), LOCKS.items())
def test_each_lock_pins_nothing_its_dependencies_do_not_need(lock, extras):
    """A dependency moved to an extra or dropped from pyproject must leave the
    lock too: production would otherwise still install it."""
    assert unjustified(lock, extras) == []


def test_the_check_sees_a_dependency_moved_out_of_production(monkeypatch):
    project = {**PYPROJECT["project"]}
    project["dependencies"] = [
        line for line in project["dependencies"] if not line.startswith("tqdm")
    ]
    monkeypatch.setitem(PYPROJECT, "project", project)
    assert unjustified("production.txt", ()) == ["tqdm"]
