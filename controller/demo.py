"""``lensops demo``: the daemon on an embedded AWS emulator and a local Git repo of ``desired-state/``.

The emulator (moto plus what it lacks) is not part of lensops: it is the
``lensops-emulator`` distribution in ``emulator/`` of the repository (``make
demo`` installs it), imported here only when the demo starts. It listens on
127.0.0.1 and is seeded with what the EconLens manifests expect to exist
already (``lensops_emulator.estate``: the scenario processor Lambda
functions with published versions, the RDS instances with a snapshot, the DR
endpoint parameters), and the daemon watches a working copy made from
``desired-state/`` under ``.lensops/demo/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from controller.errors import UsageError
from controller.settings import Settings

NEEDS_EMULATOR = "lensops demo needs the AWS emulator: pip install ./emulator (make demo does it)"


def _desired_state() -> Path:
    here = Path(__file__).resolve().parent.parent / "desired-state"
    cwd = Path.cwd() / "desired-state"
    for candidate in (cwd, here):
        if (candidate / "environments").is_dir():
            return candidate
    raise UsageError("desired-state/ not found: run lensops demo from the project's folder")


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "lensops demo", "GIT_AUTHOR_EMAIL": "demo@lensops.invalid",
           "GIT_COMMITTER_NAME": "lensops demo", "GIT_COMMITTER_EMAIL": "demo@lensops.invalid"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def make_repo(workdir: Path) -> Path:
    """A fresh working copy of desired-state/ with one commit on branch main."""
    repo = workdir / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(_desired_state(), repo)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "EconLens desired state")
    return repo


def _lensops_command() -> str:
    """How to run this lensops from the project's folder: ``.venv/bin/lensops`` there, else its full path."""
    exe = Path(sys.executable).with_name("lensops")
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def banner(aws_url: str, region: str, repo: Path, state_url: str, settings: Settings) -> str:
    """What the demo prints at start: where everything is, a change to try, and one block to paste
    in another terminal of the project's folder for the command line against the demo."""
    host, port = settings.http_host_port
    bearer = ' -H "Authorization: Bearer $LENSOPS_API_TOKEN"' if settings.api_token else ""
    lensops = _lensops_command()
    return f"""
lensops demo
  AWS emulator   {aws_url}   (account 123456789012, region {region})
  Git repository {repo}
  state store    {state_url}
  metrics        http://{host}:{port}/metrics
  status         http://{host}:{port}/api/v1/status

The daemon applies each commit of the repository, and each saved change as
<commit>-dirty (status and history show it so). Try one:
  cd {repo}
  sed -i 's/lambdaErrorsPerMinute: 10/lambdaErrorsPerMinute: 9/' environments/dev/environment.yaml
  git commit -am "lower the dev Lambda error threshold"

The command line against the demo's AWS and state store (another terminal, in the project's folder):
  export AWS_ENDPOINT_URL={aws_url} AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo AWS_DEFAULT_REGION={region} LENSOPS_STATE_URL={state_url} LENSOPS_API_RATES=off
  {lensops} status
  {lensops} history
  {lensops} plan --repo {repo} --env dev
  curl -s{bearer} http://{host}:{port}/api/v1/status | python3 -m json.tool | head -40

Ctrl-C stops the demo.
"""


def run_demo(settings: Settings) -> int:
    """Start the emulator, seed it, make the repo and run the daemon until Ctrl-C."""
    try:
        from lensops_emulator import start
        from lensops_emulator.estate import REGION, seed
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in ("lensops_emulator", "moto"):
            raise
        print(NEEDS_EMULATOR, file=sys.stderr)
        return 1
    from controller.daemon import run_daemon

    workdir = Path(os.environ.get("LENSOPS_DEMO_DIR", ".lensops/demo")).resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    port = int(os.environ.get("LENSOPS_DEMO_AWS_PORT", "0"))
    emulator = start("127.0.0.1", port)
    os.environ.update(
        AWS_ENDPOINT_URL=emulator.url, AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",
        AWS_DEFAULT_REGION=REGION, AWS_REGION=REGION,
    )
    os.environ.pop("AWS_PROFILE", None)
    seed(emulator.url)
    repo = make_repo(workdir)
    http = settings.http_addr if "LENSOPS_HTTP_ADDR" in os.environ else "127.0.0.1:8080"
    demo_settings = settings.model_copy(
        update={
            "repo_url": str(repo),
            "path": ".",
            "state_url": f"sqlite:///{workdir}/state.db",
            "http_addr": http,
            "log_format": settings.log_format if "LENSOPS_LOG_FORMAT" in os.environ else "console",
            "resync_interval": min(settings.resync_interval, 60),
            # The emulator has no quotas: unpaced, unless LENSOPS_API_RATES (or --config) says otherwise.
            "api_rates": settings.api_rates if "api_rates" in settings.model_fields_set else "off",
        }
    )
    print(banner(emulator.url, REGION, repo, f"sqlite:///{workdir}/state.db", demo_settings), file=sys.stderr, flush=True)
    try:
        return run_daemon(demo_settings)
    finally:
        emulator.stop()
