"""docs/manifests.md: generated from the models, up to date, every kind in it, every example valid."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest

from controller import docs
from controller.manifests.loader import load_tree
from controller.catalog import registry

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "manifests.md"


def _sections(text: str) -> dict[str, str]:
    """``## Heading`` -> the text up to the next such heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def _examples(section: str) -> tuple[str, dict[str, str]]:
    """The example manifest of a kind's section, and the files it says it goes with."""
    blocks = re.findall(r"(?:^#### Example\n\n(?:`[^`]+`:\n\n)?|^with `([^`]+)`:\n\n)```yaml\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    manifests = [body for path, body in blocks if not path]
    assert len(manifests) == 1, "each kind's section has one example manifest"
    return manifests[0], {path: body for path, body in blocks if path}


def test_the_committed_page_is_what_the_models_give() -> None:
    rendered = docs.render(registry())
    committed = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
    if committed != rendered:
        diff = "".join(list(difflib.unified_diff(committed.splitlines(True), rendered.splitlines(True), "docs/manifests.md", "generated", n=1))[:60])
        pytest.fail(f"docs/manifests.md is stale: run `python -m controller.docs` and commit the result\n{diff}")


def test_check_flag_says_stale_or_up_to_date(tmp_path: Path) -> None:
    target = tmp_path / "manifests.md"
    assert docs.main(["--output", str(target), "--check"]) == 1
    assert docs.main(["--output", str(target)]) == 0
    assert docs.main(["--output", str(target), "--check"]) == 0
    target.write_text(target.read_text() + "hand edit\n")
    assert docs.main(["--output", str(target), "--check"]) == 1


def test_every_kind_of_the_schema_has_a_section(lensops) -> None:
    result = lensops("schema")
    assert result.code == 0
    kinds = sorted(branch["title"] for branch in json.loads(result.out)["oneOf"])
    sections = _sections(PAGE.read_text(encoding="utf-8"))
    assert [k for k in kinds if k not in sections] == []
    assert sorted([entry.kind for entry in docs.documented(registry())]) == kinds


@pytest.mark.parametrize("kind", [entry.kind for entry in docs.documented(registry())])
def test_the_example_of_each_kind_validates(kind: str, tmp_path: Path) -> None:
    sections = _sections(PAGE.read_text(encoding="utf-8"))
    manifest, files = _examples(sections[kind])
    environment, _ = _examples(sections["Environment"])
    root = tmp_path / "repo"
    env_dir = root / "environments" / docs.EXAMPLE_ENVIRONMENT
    env_dir.mkdir(parents=True)
    (env_dir / "environment.yaml").write_text(environment)
    if kind != "Environment":
        (env_dir / "example.yaml").write_text(manifest)
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)

    result = load_tree(root, registry())

    assert [str(p) for p in result.all_problems] == []
    loaded = result.environments[docs.EXAMPLE_ENVIRONMENT]
    if kind != "Environment":
        assert [r.kind for r in [*loaded.resources, *loaded.runs]] == [kind]


def test_nested_fields_are_listed_with_their_path() -> None:
    budget = _sections(PAGE.read_text(encoding="utf-8"))["Budget"]
    assert "| `notifications[].subscribers[].address` | string | **required** |" in budget
    assert "`deployment.interval` | duration |" in _sections(PAGE.read_text(encoding="utf-8"))["LambdaAlias"]


def test_every_annotation_with_a_meaning_is_documented() -> None:
    envelope = _sections(PAGE.read_text(encoding="utf-8"))["The envelope"]
    for annotation in ("lensops.io/adopt", "lensops.io/prune", "lensops.io/suspend", "lensops.io/ignore-fields", "lensops.io/allow-replace"):
        assert f"| `{annotation}` |" in envelope


REFERENCE = ROOT / "docs" / "reference.md"
SHARED_CONTRACT = ROOT.parent / "shared" / "CONTRACT.md"


@pytest.mark.skipif(not SHARED_CONTRACT.is_file(), reason="the team's contract (../shared/CONTRACT.md) is not beside this clone")
def test_the_published_reference_is_the_contract() -> None:
    """docs/reference.md is what a clone has of the contract: it must say what the contract says."""
    published = REFERENCE.read_text().split("\n", 3)[3]  # after the comment and the title
    contract = SHARED_CONTRACT.read_text().split("\n", 1)[1]  # after the title
    assert published == contract, "docs/reference.md differs from the contract: copy it again"


def test_every_setting_and_metric_of_the_reference_exists() -> None:
    from controller import metrics
    from controller.settings import Settings

    text = REFERENCE.read_text()
    named = set(re.findall(r"`(lensops_[a-z_]+)`", text))
    exported = {family.name for family in metrics.REGISTRY.collect()} | {
        family.name + "_total" for family in metrics.REGISTRY.collect() if family.type == "counter"
    }
    assert named and named <= exported, sorted(named - exported)
    settings = set(re.findall(r"`(LENSOPS_[A-Z_]+)`", text))
    known = {f"LENSOPS_{name.upper()}" for name in Settings.model_fields} | {"LENSOPS_CACHE_DIR", "LENSOPS_DEBUG", "LENSOPS_DEMO_DIR", "LENSOPS_DEMO_AWS_PORT"}
    assert settings and settings <= known, sorted(settings - known)
