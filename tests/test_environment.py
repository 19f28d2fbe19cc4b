"""The pins CI tests, the lower bounds users install, and the Binder/conda file agree."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
KEY_PINS = {"torch": "2.14.1", "torchvision": "0.29.1", "nbval": "0.11.0"}


def lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"lock.txt line {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def environment_pins() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pins = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item in ("pip", "-e ."):  # pip itself, and the companion package from this repo
                continue
            if item.startswith("--extra-index-url "):  # where to look (PyTorch's CPU wheels), not what
                continue
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==?\s*([^\s;]+)$", item)
            assert m, f"environment.yml entry {item!r} is not pinned exactly"
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def test_key_versions_are_pinned():
    pins = lock()
    for name, version in KEY_PINS.items():
        assert pins[name] == Version(version), f"{name} should be pinned at {version}"
    jb = pins["jupyter-book"]
    assert Version("1.0.4") <= jb < Version("2"), "Jupyter Book 1 (2.x is a different tool)"


def test_pyproject_lower_bounds_admit_the_locked_versions():
    pins = lock()
    for req in pyproject_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but not pinned in requirements/lock.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"lock pins {name}=={pins[name]}, pyproject says {req}"


def test_environment_yml_matches_the_lock():
    pins, env = lock(), environment_pins()
    assert env.pop("python").startswith("3.11")
    for name, version in env.items():
        if name in pins:
            assert Version(version) == pins[name], f"environment.yml has {name}=={version}, lock has {pins[name]}"
        else:
            raise AssertionError(f"environment.yml installs {name}, which the lock does not pin")
    for req in pyproject_requirements():
        assert canonicalize_name(req.name) in env, f"environment.yml misses {req.name}"


def test_installed_environment_is_the_locked_one():
    # What the tests run with is what the lock says (catches a stale .venv).
    for name, version in lock().items():
        if name in {canonicalize_name(k) for k in KEY_PINS} | {"jupyter-book", "numpy", "matplotlib"}:
            assert Version(metadata.version(name)) == version, name
