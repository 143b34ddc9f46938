"""The distribution ships every package and every config file (the wheel itself is built,
installed and run from an empty directory by .ci/wheel_check.sh)."""
from __future__ import annotations

import tomllib

from conftest import REPO


def declared_packages() -> set[str]:
    with open(REPO / "pyproject.toml", "rb") as file:
        return set(tomllib.load(file)["tool"]["setuptools"]["packages"])


def test_every_code_package_is_declared():
    found = {".".join(path.parent.relative_to(REPO).parts)
             for root in ("llm_sweep", "hydra_plugins") for path in (REPO / root).rglob("__init__.py")}
    assert found - declared_packages() == set()
    assert not (REPO / "hydra_plugins" / "__init__.py").exists()  # Hydra needs a namespace package


def test_every_config_folder_is_declared_as_package_data():
    for top, package in (("conf", "llm_sweep.conf"), ("sweeps", "llm_sweep.sweeps")):
        folders = {path.parent.relative_to(REPO / top).parts for path in (REPO / top).rglob("*.yaml")}
        expected = {".".join((package, *parts)) for parts in folders}
        assert expected - declared_packages() == set(), f"{top}/ folders missing from pyproject.toml"


def test_config_folders_are_found_in_the_source_tree():
    from llm_sweep.core.config import CONF_DIR, SWEEPS_DIR

    assert (CONF_DIR / "config.yaml").is_file() and (SWEEPS_DIR / "width_vs_depth_cpu.yaml").is_file()
