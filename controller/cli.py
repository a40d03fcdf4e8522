"""The ``lensops`` command line (CONTRACT.md section 3): argument parsing only.

Every command calls into the engine; errors are one line per problem,
``path:line: Kind/name: message``, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any, Callable

from controller import __version__, logs
from controller.errors import LensopsError, ManifestError, PermanentError, RetryableError, UsageError

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=None, help="folder, Git working copy or Git URL (default: LENSOPS_REPO_URL or .)")
    parser.add_argument("--env", action="append", default=None, help="environment (repeatable; default all)")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--config", default=None, help="a YAML file of LENSOPS_* settings")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lensops", description="GitOps controller for AWS.")
    parser.add_argument("--version", action="version", version=f"lensops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("validate", help="load and check every manifest, no AWS call")
    _common(p)
    p.add_argument("path", nargs="?", default=None)

    p = sub.add_parser("plan", help="diff desired vs live AWS; exit 0 in sync, 2 changes pending, 1 error")
    _common(p)

    p = sub.add_parser("apply", help="one reconcile pass; exit 0 applied and healthy, 1 failed")
    _common(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--allow-mass-prune", action="store_true", help="let this apply delete more than 10%% of the managed resources")
    p.add_argument("--force-window", action="store_true", help="apply even inside a deny sync window")

    p = sub.add_parser("decommission", help="delete what lensops owns in an environment removed from Git; exit 0 done, 1 refused or failed")
    _common(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--allow-mass-prune", action="store_true", help="let it delete the environment's resources (it deletes them all)")

    p = sub.add_parser("import", help="write adopting manifests for what exists in AWS; never writes to AWS; exit 0 written, 1 error")
    p.add_argument("--env", required=True, help="the environment the manifests are for")
    p.add_argument("--region", required=True, help="the AWS region to read")
    p.add_argument("--kind", action="append", default=[], help="a kind to import (repeatable; default every kind)")
    p.add_argument("--prefix", default="", help="only resources whose name starts with it (left out of the manifests' names)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="only resources with this tag (repeatable)")
    p.add_argument("--out", required=True, help="the tree to write into (DIR/environments/ENV/, DIR/templates/)")
    p.add_argument("--dry-run", action="store_true", help="print what would be written, write nothing")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--config", default=None, help="a YAML file of LENSOPS_* settings")

    p = sub.add_parser("run", help="the daemon")
    _common(p)

    p = sub.add_parser("status", help="what is applied, drifted, failed, refused; exit 1 when the state store does not exist")
    _common(p)
    p.add_argument("--check", action="store_true", help="exit 1 when an environment is failed, invalid, drifted or held after a failed bake")

    p = sub.add_parser("history", help="past revisions, refused ones included")
    _common(p)
    p.add_argument("--limit", type=int, default=50)

    p = sub.add_parser("runbook", help="runbooks: list, show NAME")
    _common(p)
    rb = p.add_subparsers(dest="runbook_command", metavar="list|show")
    rb.required = True
    listing = rb.add_parser("list")
    show = rb.add_parser("show")
    show.add_argument("name")
    for leaf in (listing, show):  # `lensops runbook show NAME --output json` reads naturally
        leaf.add_argument("--output", choices=("text", "json"), default=argparse.SUPPRESS)

    p = sub.add_parser("schema", help="JSON Schema of every kind")
    _common(p)

    p = sub.add_parser("iam-policy", help="least-privilege IAM policy for the manifests in scope")
    _common(p)

    p = sub.add_parser("demo", help="the daemon on an embedded AWS emulator")
    _common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lensops`` console script."""
    args = build_parser().parse_args(argv)
    from controller.settings import load_settings

    try:
        settings = load_settings(args.config)
        logs.configure(settings.log_format if args.command in ("run", "demo") else "console", "info" if args.command in ("run", "demo") else "warning")
        handler = _COMMANDS[args.command]
        return handler(args, settings)
    except ManifestError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_ERROR
    except (UsageError, PermanentError, RetryableError, LensopsError) as exc:
        print(f"lensops: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # the contract promises no traceback; LENSOPS_DEBUG shows it
        if os.environ.get("LENSOPS_DEBUG"):
            raise
        print(f"lensops: internal error: {type(exc).__name__}: {exc} (set LENSOPS_DEBUG=1 for a traceback)", file=sys.stderr)
        return EXIT_ERROR


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.output == "json":
        json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
        sys.stdout.write("\n")
    else:
        print(text)


def cmd_validate(args: argparse.Namespace, settings: Any) -> int:
    from controller import catalog
    from controller.manifests.loader import load_tree
    from controller.source import Source

    target = args.path or args.repo or settings.repo_url
    source = Source(target, settings.branch, settings.path if not args.path else ".", settings.cache_dir)
    checkout = source.checkout()
    result = load_tree(checkout.root, catalog.registry(), args.env, lint=True)
    problems, warnings = result.all_problems, result.all_warnings
    counts = {name: len(env.resources) + len(env.runs) for name, env in result.environments.items()}
    data = {
        "valid": not problems,
        "revision": checkout.revision,
        "environments": counts,
        "problems": [{"path": p.path, "line": p.line, "resource": p.ident, "message": p.message} for p in problems],
        "warnings": [{"path": w.path, "line": w.line, "resource": w.ident, "message": w.message} for w in warnings],
    }
    if args.output == "json":
        _emit(args, data, "")
    else:
        for problem in [*problems, *warnings]:
            print(problem, file=sys.stderr)
        if not problems:
            envs = ", ".join(f"{n} ({c} resources)" for n, c in counts.items())
            noted = f"; {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
            print(f"valid: {envs or 'no environments'}{noted}")
    return EXIT_OK if not problems else EXIT_ERROR


def cmd_plan(args: argparse.Namespace, settings: Any) -> int:
    return _reconcile(args, settings, execute=False)


def cmd_apply(args: argparse.Namespace, settings: Any) -> int:
    return _reconcile(args, settings, execute=True)


def _reconcile(args: argparse.Namespace, settings: Any, execute: bool) -> int:
    from controller.render import plan_text, use_colour
    from controller.runner import Runner

    # A plan reads the store and writes nothing: a missing one (a pull request's check) is empty, and stays missing.
    runner = Runner.from_settings(settings, repo=args.repo, missing="create" if execute else "empty")
    try:
        if execute and not args.yes and sys.stdin.isatty():
            preview = runner.run(args.env, execute=False)
            for outcome in preview.outcomes:
                print(plan_text(outcome.plan, use_colour()))
            if not preview.has_changes:
                print("Nothing to apply.")
                return EXIT_OK if preview.ok else EXIT_ERROR
            if input("Apply these changes? [y/N] ").strip().lower() not in ("y", "yes"):
                print("Cancelled.")
                return EXIT_ERROR
        report = runner.run(
            args.env,
            execute=execute,
            allow_mass_prune=getattr(args, "allow_mass_prune", False),
            force_window=getattr(args, "force_window", False),
            progress=_progress_printer(),
        )
    finally:
        runner.close()
    for problem in report.problems:
        print(problem, file=sys.stderr)
    for error in report.errors:
        print(f"lensops: {error}", file=sys.stderr)
    data = report.as_dict()
    text = "\n".join(plan_text(o.plan, use_colour()) for o in report.outcomes)
    if execute:
        text += "\n" + report.summary()
    _emit(args, data, text)
    if not report.ok:
        return EXIT_ERROR
    if not execute and report.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_decommission(args: argparse.Namespace, settings: Any) -> int:
    from controller.render import plan_text, use_colour
    from controller.runner import Runner

    if not args.env or len(args.env) != 1:
        raise UsageError("decommission: name the one environment removed from Git: --env NAME")
    name = args.env[0]
    runner = Runner.from_settings(settings, repo=args.repo)
    try:
        preview = report = runner.decommission(name, execute=False, allow_mass_prune=args.allow_mass_prune)
        if preview.ok and preview.has_changes and not args.yes and not _deletes_confirmed(args, preview, name):
            return EXIT_ERROR
        if preview.ok and preview.outcomes:
            report = runner.decommission(name, execute=True, allow_mass_prune=args.allow_mass_prune, progress=_progress_printer())
    finally:
        runner.close()
    text = "\n".join(plan_text(o.plan, use_colour()) for o in report.outcomes)
    if report is preview:  # refused: nothing was deleted
        for error in [e for o in report.outcomes for e in o.plan.errors]:
            print(f"lensops: environment {name}: {error}", file=sys.stderr)
    else:
        for o in report.outcomes:
            left = sum(1 for r in o.plan.resources if r.status == "retained")
            text += f"\nDecommission: {name}: {o.result}, {len(o.applied)} deleted, {left} left in AWS"
    text += "".join(f"\nenvironment {env}: {why}" for env, why in report.held.items())
    _emit(args, report.as_dict(), text.strip("\n"))
    return EXIT_OK if report.ok else EXIT_ERROR


def _deletes_confirmed(args: argparse.Namespace, preview: Any, name: str) -> bool:
    """Show what a decommission deletes and ask; without a terminal to ask on, refuse (``--yes`` confirms)."""
    from controller.render import plan_text, use_colour

    deletes = sum(o.plan.counts()["delete"] for o in preview.outcomes)
    if not sys.stdin.isatty():
        _emit(args, preview.as_dict(), "\n".join(plan_text(o.plan, use_colour()) for o in preview.outcomes))
        print(f"lensops: decommission deletes {deletes} resources of environment {name}: pass --yes (no terminal to ask on)", file=sys.stderr)
        return False
    for outcome in preview.outcomes:
        print(plan_text(outcome.plan, use_colour()))
    if input(f"Delete these {deletes} resources of environment {name}? [y/N] ").strip().lower() in ("y", "yes"):
        return True
    print("Cancelled.")
    return False


def _progress_printer() -> Callable[[str], None]:
    """Progress lines: coloured through rich on a terminal, plain lines otherwise. Resources are
    written from several threads: each line goes out whole, in one write under a lock."""
    if not sys.stderr.isatty() or "NO_COLOR" in os.environ:
        lock = threading.Lock()

        def plain(line: str) -> None:
            with lock:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

        return plain
    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    styles = {"+ ": "green", "~ ": "yellow", "- ": "red", "! ": "bold red"}

    def show(line: str) -> None:
        _, _, body = line.partition(": ")
        style = next((s for prefix, s in styles.items() if body.startswith(prefix)), "cyan")
        console.print(line, style=style, markup=False)

    return show


def cmd_schema(args: argparse.Namespace, settings: Any) -> int:
    from controller import catalog
    from controller.schema import schema

    json.dump(schema(catalog.registry()), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def _recorded(args: argparse.Namespace, settings: Any, read: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """What ``read`` finds in the state store that a daemon or an apply wrote, with the store's name
    (``store`` in JSON, a ``state:`` line on stderr for people); a store that does not exist is an
    error (``StoreMissing``, exit 1), never created: an empty one would say nothing was ever applied."""
    from controller.state import open_store, store_name

    name = store_name(settings.state_url)
    store = open_store(settings.state_url, missing="error")
    try:
        doc = {"store": name, **read(store)}
    finally:
        store.close()
    if args.output != "json":
        print(f"state: {name}", file=sys.stderr)
    return doc


def cmd_status(args: argparse.Namespace, settings: Any) -> int:
    from controller.status import check_failures, status_document, status_text

    doc = _recorded(args, settings, lambda store: status_document(store, args.env))
    _emit(args, doc, status_text(doc))
    if not args.check:
        return EXIT_OK
    failures = check_failures(doc)
    for line in failures:
        print(f"lensops: {line}", file=sys.stderr)
    return EXIT_ERROR if failures else EXIT_OK


def cmd_history(args: argparse.Namespace, settings: Any) -> int:
    from controller.status import history_document, history_text

    doc = _recorded(args, settings, lambda store: history_document(store, args.env, args.limit))
    _emit(args, doc, history_text(doc))
    return EXIT_OK


def cmd_runbook(args: argparse.Namespace, settings: Any) -> int:
    from runbooks import CATALOGUE

    if args.runbook_command == "list":
        listing = [{"name": r.name, "summary": r.summary, "steps": [s.name for s in r.steps]} for r in CATALOGUE.values()]
        _emit(args, listing, "\n".join(f"{r.name:<12} {r.summary}" for r in CATALOGUE.values()))
        return EXIT_OK
    runbook = CATALOGUE.get(args.name)
    if runbook is None:
        raise UsageError(f"no runbook {args.name!r}; known: {', '.join(sorted(CATALOGUE))}")
    data: dict[str, Any] = {
        "name": runbook.name,
        "summary": runbook.summary,
        "page": f"runbooks/{runbook.page}",
        "timeoutSeconds": runbook.timeout,
        "parameters": [{"name": p.name, "required": p.required, "description": p.description} for p in runbook.parameters],
        "steps": [
            {"name": s.name, "description": s.description, "timeoutSeconds": s.timeout, "touches": list(s.touches)}
            for s in runbook.steps
        ],
        "touches": list(runbook.touches),
    }
    lines = [f"{runbook.name}: {runbook.summary}", "parameters:"]
    lines += [f"  {p['name']}{' (required)' if p['required'] else ''}: {p['description']}" for p in data["parameters"]]
    lines.append(f"steps (each checkpointed; run timeout {runbook.timeout / 60:.0f} min):")
    for number, step in enumerate(runbook.steps, 1):
        lines.append(f"  {number}. {step.name} (timeout {step.timeout / 60:.0f} min): {step.description}")
        if step.touches:
            lines.append(f"     touches: {', '.join(step.touches)}")
    lines.append("  then: the result is sent to the environment's notification topic and webhook")
    lines.append(f"documentation: runbooks/{runbook.page}")
    _emit(args, data, "\n".join(lines))
    return EXIT_OK


def cmd_iam_policy(args: argparse.Namespace, settings: Any) -> int:
    from controller import catalog
    from controller.iam import policy_for
    from controller.manifests.loader import load_tree
    from controller.source import Source

    checkout = Source(args.repo or settings.repo_url, settings.branch, settings.path, settings.cache_dir).checkout()
    registry = catalog.registry()
    result = load_tree(checkout.root, registry, args.env)
    if result.all_problems:
        raise ManifestError(result.all_problems)
    json.dump(policy_for(registry, result.environments.values(), settings.state_url), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK


def cmd_import(args: argparse.Namespace, settings: Any) -> int:
    from pathlib import Path

    from controller import catalog, pacing
    from controller.aws import ClientFactory, caller_account
    from controller.importer import Request, run_import

    tags: dict[str, str] = {}
    for item in args.tag:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r}: write KEY=VALUE")
        tags[key] = value
    request = Request(
        environment=args.env,
        region=args.region,
        out=Path(args.out),
        kinds=tuple(args.kind),
        prefix=args.prefix,
        tags=tags,
        dry_run=args.dry_run,
    )
    # Read as any pass reads: the process's rates, the factory's concurrency, every call counted.
    factory = ClientFactory(settings.concurrency, pacer=pacing.configure(settings.api_rates))
    account = caller_account(factory, args.region)
    summary = run_import(request, catalog.registry(), factory, account)
    text = summary.text()
    if args.dry_run and args.output != "json":
        text = "\n".join(f"--- {path}\n{body}" for path, body in sorted(summary.files.items())) + "\n" + text
    _emit(args, summary.as_dict(), text)
    return EXIT_OK


def cmd_run(args: argparse.Namespace, settings: Any) -> int:
    from controller.daemon import run_daemon

    return run_daemon(settings, repo=args.repo, envs=args.env)


def cmd_demo(args: argparse.Namespace, settings: Any) -> int:
    from controller.demo import run_demo

    return run_demo(settings)


_COMMANDS: dict[str, Callable[[argparse.Namespace, Any], int]] = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "schema": cmd_schema,
    "status": cmd_status,
    "history": cmd_history,
    "runbook": cmd_runbook,
    "iam-policy": cmd_iam_policy,
    "decommission": cmd_decommission,
    "import": cmd_import,
    "run": cmd_run,
    "demo": cmd_demo,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
