"""Symlinks in the manifest tree: followed only to inside the repository (and outside its .git),
so that whoever can merge to it cannot make lensops read a file of the controller's host.

A link that may not be followed is a problem of the environment it belongs to, named by the
link's own path; neither the target's content nor its path is shown."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import Tree, alarm
from controller.catalog import registry
from controller.manifests.loader import LoadResult, load_tree

SECRET = "aws_secret_access_key = HOST-SECRET-1234"
HOST_VALUE = "HOST-VALUE-5678"
OUTSIDE = "symlink to a path outside the repository"
STACK = "apiVersion: lensops.io/v1\nkind: Stack\nmetadata:\n  name: network\nspec:\n  template: {template}\n"


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """Files of the controller's host: a credentials file and a folder of manifests and a template."""
    folder = tmp_path / "host"
    (folder / "manifests").mkdir(parents=True)
    (folder / "credentials").write_text(f"[default]\n{SECRET}\n")
    (folder / "manifests" / "topic.yaml").write_text(
        f"apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {{name: host}}\nspec:\n  attributes: {{DisplayName: {HOST_VALUE}}}\n"
    )
    (folder / "manifests" / "environment.yaml").write_text(
        "apiVersion: lensops.io/v1\nkind: Environment\nmetadata: {name: evil}\nspec: {region: us-east-1}\n"
    )
    (folder / "manifests" / "network.yaml").write_text(f"Description: {HOST_VALUE}\nResources: {{}}\n")
    return folder


def _link(tree: Tree, relative: str, target: str | Path) -> None:
    path = tree.root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def _load(tree: Tree, host: Path | None = None) -> LoadResult:
    started = time.monotonic()
    result = load_tree(tree.root, registry())
    assert time.monotonic() - started < 5.0
    shown = repr(result)  # every loaded spec and every problem
    assert SECRET not in shown and HOST_VALUE not in shown
    if host is not None:
        assert str(host) not in shown, "the link's target is not shown"
    return result


def _estate(tree: Tree) -> None:
    tree.environment("dev")
    tree.environment("prod")
    tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    tree.write("environments/prod/alarms.yaml", alarm("api-5xx"))


@pytest.mark.parametrize(
    "link, target, environment",
    [
        ("environments/dev/creds.yaml", "credentials", "dev"),  # a manifest file
        ("environments/dev/more", "manifests", "dev"),  # a folder inside an environment
        ("environments/evil", "manifests", "evil"),  # an environment's folder
        ("environments/dev/abs.yml", "/etc/hostname", "dev"),  # an absolute target
        ("base", "manifests", ""),  # base/ itself
        ("base/shared.yaml", "manifests/topic.yaml", ""),  # a file inside base/
        ("environments/dev/notes.txt", "credentials", "dev"),  # never read, still refused
    ],
)
def test_a_link_out_of_the_repository_is_a_problem_of_its_environment(tree, host, link, target, environment):
    _estate(tree)
    _link(tree, link, target if target.startswith("/") else host / target)
    result = _load(tree, host)
    assert [str(p) for p in result.problems[environment]] == [f"{link}: {OUTSIDE}"]
    if environment:
        assert set(result.problems) == {environment}
        assert set(result.environments) == {"dev", "prod"} - {environment}  # the others load
    else:  # a base/ problem is reported once, outside every environment, and refuses them all
        assert set(result.problems) == {"", "dev", "prod"} and result.environments == {}


@pytest.mark.parametrize("templates", ["/", "host-folder"])
def test_templates_folder_linked_out_of_the_repository(tree, host, templates):
    _estate(tree)
    if templates == "/":
        _link(tree, "templates", "/")
        value = str(host / "credentials").lstrip("/")
    else:
        _link(tree, "templates", host)
        value = "credentials"
    tree.write("environments/dev/stack.yaml", STACK.format(template=value))
    result = _load(tree)
    assert [str(p) for p in result.problems["dev"]] == [
        # a long value is cut at 80 characters in the message
        f"environments/dev/stack.yaml:6: Stack/network: template {value if len(value) <= 80 else value[:80] + '...'!r} "
        f"cannot be read: templates/ is a {OUTSIDE}"
    ]
    assert set(result.environments) == {"prod"}


def test_template_file_linked_out_of_the_repository(tree, host):
    _estate(tree)
    _link(tree, "templates/network.yaml", host / "manifests" / "network.yaml")
    tree.write("environments/dev/stack.yaml", STACK.format(template="network.yaml"))
    result = _load(tree, host)
    assert [str(p) for p in result.problems["dev"]] == [
        f"environments/dev/stack.yaml:6: Stack/network: template 'network.yaml' leads through a {OUTSIDE}"
    ]


def test_a_link_into_the_git_folder_is_refused(tree):
    """The clone's .git/config may hold the remote's URL with its token: inside the checkout, not the repository's content."""
    _estate(tree)
    tree.write(".git/config", f'[remote "origin"]\n\turl = https://x:{SECRET}@git.example.com/r.git\n')
    _link(tree, "environments/dev/config.yaml", "../../.git/config")
    _link(tree, "templates/config.yaml", "../.git/config")
    tree.write("environments/prod/stack.yaml", STACK.format(template="config.yaml"))
    result = _load(tree)
    assert [str(p) for p in result.problems["dev"]] == ["environments/dev/config.yaml: symlink into a .git folder"]
    assert [str(p) for p in result.problems["prod"]] == [
        f"environments/prod/stack.yaml:6: Stack/network: template 'config.yaml' leads through a {OUTSIDE}"
    ]


def test_symlink_loops_end_at_once(tree):
    _estate(tree)
    _link(tree, "environments/dev/self.yaml", "self.yaml")
    _link(tree, "environments/dev/a.yaml", "b.yaml")
    _link(tree, "environments/dev/b.yaml", "a.yaml")
    _link(tree, "environments/dev/again", ".")  # a folder that holds itself
    _link(tree, "environments/dev/up", "../dev")
    _link(tree, "environments/prod/loop", "loop")  # neither a file nor a folder: skipped
    _link(tree, "templates", "templates")
    tree.write("environments/prod/stack.yaml", STACK.format(template="network.yaml"))
    result = _load(tree)
    nowhere = "symlink that leads nowhere (a missing target or a loop)"
    assert sorted(str(p) for p in result.problems["dev"]) == [
        f"environments/dev/a.yaml: {nowhere}",
        f"environments/dev/b.yaml: {nowhere}",
        f"environments/dev/self.yaml: {nowhere}",
    ]
    assert [str(p) for p in result.problems["prod"]] == [
        f"environments/prod/stack.yaml:6: Stack/network: template 'network.yaml' cannot be read: templates/ is a {nowhere}"
    ]


def test_links_inside_the_repository_are_followed(tree):
    tree.environment("dev")
    tree.environment("staging")
    tree.write("environments/dev/topic.yaml", "apiVersion: lensops.io/v1\nkind: Topic\nmetadata: {name: alerts}\nspec: {}\n")
    tree.write("shared/alarms.yaml", alarm("api-5xx"))
    tree.write("cfn/v2/network.yaml", "Resources: {}\n")
    _link(tree, "environments/staging/topic.yaml", "../dev/topic.yaml")
    _link(tree, "environments/staging/shared", "../../shared")
    _link(tree, "templates", "cfn")
    _link(tree, "cfn/network.yaml", "v2/network.yaml")
    tree.write("environments/staging/stack.yaml", STACK.format(template="network.yaml"))
    result = _load(tree)
    assert result.ok, result.all_problems
    staging = result.environments["staging"].by_ident()
    assert set(staging) == {"Topic/alerts", "MetricAlarm/api-5xx", "Stack/network"}
    assert staging["Topic/alerts"].path == "environments/staging/topic.yaml"
    assert staging["MetricAlarm/api-5xx"].path == "environments/staging/shared/alarms.yaml"
    assert staging["Stack/network"].spec["templateBody"] == "Resources: {}\n"


def test_a_committed_link_never_shows_the_host_file(daemon, git_remote, host, tmp_path):
    """Git keeps a symlink as a link: cloned into the cache, it points at the host's file again.
    The daemon refuses that environment, keeps the others, and shows no host content or path."""
    git_remote.tree.environment("dev")
    git_remote.tree.write("environments/dev/alarms.yaml", alarm("api-5xx"))
    git_remote.tree.environment("prod")
    _link(git_remote.tree, "environments/prod/creds.yaml", host / "credentials")
    _link(git_remote.tree, "templates", host / "manifests")
    git_remote.tree.write("environments/prod/stack.yaml", STACK.format(template="network.yaml"))
    revision = git_remote.commit("links out of the repository")
    assert git_remote._git("ls-files", "-s", "templates").startswith("120000"), "Git stores the link as a link"

    d = daemon()
    d.wait_until(lambda: d.applied_revision("dev") == revision)
    prod = d.wait_until(lambda: d.status()["environments"].get("prod", {}).get("invalid"))
    assert prod == [
        f"environments/prod/creds.yaml: {OUTSIDE}",
        f"environments/prod/stack.yaml:6: Stack/network: template 'network.yaml' cannot be read: templates/ is a {OUTSIDE}",
    ]
    cache = Path(tmp_path / "cache")
    assert any(cache.rglob("creds.yaml")), "the clone holds the link"
    shown = json.dumps(d.status()) + d.logs()
    assert SECRET not in shown and HOST_VALUE not in shown
    assert str(cache) not in shown and str(host) not in shown


def test_an_earlier_revision_with_a_link_out_of_the_repository_is_refused_when_read_back(git_remote, tmp_path):
    """The rollback runbook and the daemon read earlier revisions back from Git (Source.export):
    a committed link that leads out of the repository is one clear refusal, and nothing is
    extracted through it."""
    from controller.errors import UsageError
    from controller.source import Source

    git_remote.tree.environment("dev")
    (git_remote.work / "environments" / "dev" / "creds.yaml").symlink_to("/etc/hostname")
    revision = git_remote.commit("a link out of the repository")
    source = Source(git_remote.url, cache_dir=str(tmp_path / "cache"))
    source.checkout()
    with pytest.raises(UsageError, match=r"revision \w{12} cannot be read back: .*creds.yaml.* leads out of the repository"):
        source.export(revision)
    assert not list((tmp_path / "cache" / "revisions").glob("*/environments/dev/creds.yaml"))
