"""The product ships no test tooling (issue 14).

`pip install .` (the wheel, and the Docker image built from the same files)
holds lensops's packages only: no emulator, no module importing moto, and no
moto or lensops-emulator among its requirements outside the `test` and `demo`
extras. And lensops runs without them: validate, plan, apply, run and demo in
a process where importing moto, lensops_emulator and moto's server
dependencies fails (tests/without_test_tooling.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
from packaging.requirements import Requirement

from conftest import alarm
from daemon_helpers import DaemonProcess

ROOT = Path(__file__).resolve().parent.parent
WITHOUT_TOOLING = [sys.executable, str(Path(__file__).with_name("without_test_tooling.py"))]
PRODUCT_PACKAGES = {"controller", "reconcilers", "runbooks"}
TOOLING = {"moto", "lensops-emulator"}
IMPORTS_MOTO = re.compile(r"^\s*(?:import|from)\s+moto\b", re.MULTILINE)
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info",
    ".lensops", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache",
)


# --- the wheel ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The wheel `pip install .` installs, built offline from a copy of the checkout
    (emulator/ and tests/ included, so that the package discovery is what is checked)."""
    source = tmp_path_factory.mktemp("source") / "lensops"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path_factory.mktemp("wheelhouse")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--wheel-dir", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (path,) = out.glob("lensops-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_the_wheel_holds_the_product_packages_and_no_emulator(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == PRODUCT_PACKAGES
    assert [n for n in names if "emulator" in n.lower()] == []
    assert "controller/cli.py" in names and "controller/demo.py" in names


def test_the_wheel_declares_its_license_as_an_spdx_expression(wheel: zipfile.ZipFile) -> None:
    """PEP 639: ``License-Expression`` (Metadata 2.4), not the deprecated free-text ``License`` that
    ``license = {text = ...}`` wrote; and the build is bounded to a setuptools that writes it."""
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    headers = Parser().parsestr(wheel.read(metadata).decode())
    assert headers["License-Expression"] == "Apache-2.0"
    assert headers.get_all("License") is None
    assert tuple(int(part) for part in headers["Metadata-Version"].split(".")) >= (2, 4)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    (setuptools,) = [Requirement(r) for r in project["build-system"]["requires"] if Requirement(r).name == "setuptools"]
    assert not setuptools.specifier.contains("76.9") and setuptools.specifier.contains("77.0"), str(setuptools)
    licenses = sorted(p.name for p in ROOT.glob("LICEN[CS]E*"))
    assert project["project"].get("license-files", licenses) == licenses, "a license file present is named in license-files"


def test_no_file_of_the_wheel_imports_moto(wheel: zipfile.ZipFile) -> None:
    importing = [n for n in wheel.namelist() if IMPORTS_MOTO.search(wheel.read(n).decode("utf-8", "replace"))]
    assert importing == []


def test_the_wheel_requires_moto_and_the_emulator_only_in_extras(wheel: zipfile.ZipFile) -> None:
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [Requirement(r) for r in Parser().parsestr(wheel.read(metadata).decode()).get_all("Requires-Dist")]
    tooling = [r for r in requires if r.name.lower() in TOOLING]
    assert all(r.marker is not None and "extra" in str(r.marker) for r in tooling), [str(r) for r in tooling]
    plain = {r.name.lower() for r in requires if r.marker is None}
    assert "boto3" in plain and not plain & TOOLING
    assert "cfn-lint" in plain  # a Stack's templates are checked with its schemas and rules (reconcilers/cfn_validate.py)
    for extra in ("test", "demo"):  # the extras do bring the emulator
        assert any(r.name == "lensops-emulator" and r.marker.evaluate({"extra": extra}) for r in tooling), extra


# --- lensops without the test tooling ----------------------------------------------------


def _without_tooling(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WITHOUT_TOOLING, *argv], capture_output=True, text=True, timeout=120)


def test_the_test_tooling_is_really_refused() -> None:
    for module in ("moto", "lensops_emulator", "lensops_emulator.estate", "flask"):
        done = subprocess.run(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); import without_test_tooling as w; w.install(); import {module}"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 1 and "ModuleNotFoundError" in done.stderr and "refused: test tooling" in done.stderr, done.stderr


def test_validate_plan_and_apply_run_without_the_test_tooling(aws: Any, client: Any, tree: Any) -> None:
    tree.environment("dev")
    tree.write("environments/dev/alarms.yaml", alarm("api-errors", threshold=5))

    validated = _without_tooling("validate", str(tree.root))
    assert validated.returncode == 0, validated.stderr
    planned = _without_tooling("plan", "--repo", str(tree.root))
    assert planned.returncode == 2 and "api-errors" in planned.stdout, planned.stdout + planned.stderr
    applied = _without_tooling("apply", "--yes", "--repo", str(tree.root))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    (live,) = client("cloudwatch").describe_alarms(AlarmNames=["api-errors"])["MetricAlarms"]
    assert live["Threshold"] == 5
    again = _without_tooling("plan", "--repo", str(tree.root))
    assert again.returncode == 0, again.stdout + again.stderr
    for done in (validated, planned, applied, again):
        assert "Traceback" not in done.stderr


def test_templates_are_checked_with_cfn_lint_without_the_test_tooling(tree: Any) -> None:
    """cfn-lint is the product's own dependency, not one that moto brings: its schemas and rules
    check a Stack's template where moto cannot be imported."""
    tree.environment("dev")
    tree.write("templates/queue.yaml", "Parameters:\n  Unused: {Type: String, Default: x}\nResources:\n  Jobs: {Type: AWS::SQS::Queue}\n")
    tree.write("environments/dev/stack.yaml", "apiVersion: lensops.io/v1\nkind: Stack\nmetadata: {name: queue}\nspec: {template: queue.yaml}\n")
    validated = _without_tooling("validate", str(tree.root))
    assert validated.returncode == 0, validated.stderr
    assert validated.stderr == "templates/queue.yaml:2: Stack/queue: warning: Parameter Unused not used. (cfn-lint W2001)\n"
    tree.write("environments/dev/stack.yaml", "apiVersion: lensops.io/v1\nkind: Stack\nmetadata: {name: queue}\nspec: {template: queue.yaml, parameters: {Used: x}}\n")
    refused = _without_tooling("validate", str(tree.root))
    assert refused.returncode == 1 and "parameter Used is not declared by templates/queue.yaml" in refused.stderr, refused.stderr


def test_the_daemon_runs_without_the_test_tooling(aws: Any, client: Any, git_remote: Any, tmp_path: Path) -> None:
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-errors", threshold=7))
    revision = git_remote.commit("one alarm")
    settings = {"LENSOPS_REPO_URL": git_remote.url, "LENSOPS_POLL_INTERVAL": "1s", "LENSOPS_RESYNC_INTERVAL": "2s"}
    daemon = DaemonProcess(tmp_path, settings, launcher=WITHOUT_TOOLING)
    try:
        daemon.wait_until(lambda: daemon.applied_revision("dev") == revision, timeout=40)
        assert client("cloudwatch").describe_alarms(AlarmNames=["api-errors"])["MetricAlarms"][0]["Threshold"] == 7
    finally:
        code = daemon.terminate()
    assert code == 0, daemon.log_path.read_text()[-3000:]


def test_demo_without_the_emulator_says_how_to_get_it() -> None:
    done = _without_tooling("demo")
    assert done.returncode == 1
    assert done.stderr == "lensops demo needs the AWS emulator: pip install ./emulator (make demo does it)\n"
    assert done.stdout == ""
