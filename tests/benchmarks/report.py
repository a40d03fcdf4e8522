"""What the benchmarks measured, and the table ``make bench`` prints at the end of the run."""

from __future__ import annotations

import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Row:
    """One estate: lensops' timings and calls, and the serial boto3 loop doing the same work."""

    label: str
    resources: int
    validate_s: float | None = None
    apply_s: float | None = None
    plan_runs: list[float] = field(default_factory=list)
    change_s: float | None = None
    reads: int | None = None
    floor: int | None = None
    writes: int | None = None
    change_writes: dict[str, int] = field(default_factory=dict)
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    floor_calls: dict[tuple[str, str], int] = field(default_factory=dict)
    rss_mb: float | None = None
    boto3_apply_s: float | None = None
    boto3_apply_work_s: float | None = None
    boto3_check_s: float | None = None
    boto3_check_work_s: float | None = None
    boto3_check_calls: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def plan_s(self) -> float | None:
        return statistics.median(self.plan_runs) if self.plan_runs else None


@dataclass
class QuotaRow:
    """One scenario at AWS's request quotas: the time of its writes beside the floor the quota sets, and
    the throttled answers it drew (every operation's) counted against its writes."""

    label: str
    writes: int
    seconds: float
    floor_s: float
    target: float
    """The time target, as a multiple of the floor."""
    throttled: dict[tuple[str, str], int] = field(default_factory=dict)
    attempts: dict[tuple[str, str], int] = field(default_factory=dict)
    """Every request made during the scenario, throttled ones included."""
    notes: list[str] = field(default_factory=list)

    THROTTLED_TARGET = 0.02

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_s

    @property
    def throttled_share(self) -> float:
        return sum(self.throttled.values()) / self.writes if self.writes else float("nan")


def _s(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _machine() -> str:
    import boto3
    import moto

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    return (
        f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"boto3 {boto3.__version__}, moto {moto.__version__}, {platform.system()} {platform.release()}"
    )


class Results:
    """Rows by label, single figures by name, and the profile's text."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.facts: list[tuple[str, str]] = []
        self.profile: str = ""
        self.phases: dict[str, dict[str, float]] = {}
        """``label -> phase -> seconds`` from tests/benchmarks/phases.py runs."""
        self.quotas: list[QuotaRow] = []
        """Scenarios at AWS's request quotas (bench_quotas.py)."""

    def empty(self) -> bool:
        return not (self.rows or self.facts or self.profile or self.phases or self.quotas)

    def row(self, label: str, resources: int) -> Row:
        return self.rows.setdefault(label, Row(label, resources))

    def fact(self, name: str, value: str) -> None:
        self.facts.append((name, value))

    def render(self) -> str:
        out = [f"machine: {_machine()}", ""]
        if self.rows:
            out += [
                "| estate | resources | validate (s) | first apply (s) | no-op plan (s) | one-field change (s) "
                "| no-op reads / floor | no-op writes | plan peak RSS (MB) "
                "| boto3 loop: first apply (s) | boto3 loop: no-op check (s, calls) |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for r in self.rows.values():
                ratio = f" ({r.reads / r.floor:.2f}x)" if r.reads is not None and r.floor else ""
                check = "—" if r.boto3_check_s is None else f"{r.boto3_check_s:.1f} ({r.boto3_check_calls})"
                out.append(
                    f"| {r.label} | {r.resources:,} | {_s(r.validate_s)} | {_s(r.apply_s)} | {_s(r.plan_s)} | {_s(r.change_s)} "
                    f"| {r.reads if r.reads is not None else '—'} / {r.floor if r.floor is not None else '—'}{ratio} "
                    f"| {r.writes if r.writes is not None else '—'} "
                    f"| {_s(r.rss_mb, 0)} | {_s(r.boto3_apply_s)} | {check} |"
                )
            out.append("")
            out.append("Times are wall-clock seconds of a `lensops` subprocess (start-up included); "
                       "no-op plan: median of its runs; boto3 loop: a subprocess too (its own start-up included).")
            for r in self.rows.values():
                details = []
                if len(r.plan_runs) > 1:
                    details.append("no-op plan runs " + ", ".join(f"{x:.2f}" for x in r.plan_runs))
                if r.boto3_apply_work_s is not None:
                    details.append(f"boto3 loop work only: apply {r.boto3_apply_work_s:.2f} s, check {r.boto3_check_work_s:.2f} s")
                if r.change_writes:
                    details.append("one-field change writes " + ", ".join(f"{k} {v}" for k, v in sorted(r.change_writes.items())))
                over = {k: (v, r.floor_calls.get(k, 0)) for k, v in sorted(r.calls.items()) if v != r.floor_calls.get(k, 0)}
                if r.floor_calls and over:
                    details.append("calls off the floor: " + ", ".join(f"{s}:{o} {v} vs {f}" for (s, o), (v, f) in over.items()))
                details += r.notes
                if details:
                    out.append(f"- {r.label}: " + "; ".join(details))
            out.append("")
        if self.phases:
            columns = [
                "wall", "imports", "load", "account guard", "state read", "observe",
                "observe: longest alarm batch", "decide", "decide: scheduler CPU", "record", "render", "cpu", "peak MB",
            ]
            out += [
                "where the time goes (seconds; wall = the subprocess, cpu = its CPU time, peak MB = its VmHWM; "
                "observe and decide are wall clock, their AWS waits included; one extra run of each, through phases.py):",
                "",
                "| run | " + " | ".join(columns) + " |",
                "| --- |" + " ---: |" * len(columns),
            ]
            for label, times in self.phases.items():
                out.append(f"| {label} | " + " | ".join(_s(times.get(c), 0 if c == "peak MB" else 2) for c in columns) + " |")
            out.append("")
        if self.quotas:
            out += _render_quotas(self.quotas)
        if self.facts:
            out += ["| figure | value |", "| --- | --- |"]
            out += [f"| {name} | {value} |" for name, value in self.facts]
            out.append("")
        if self.profile:
            out += ["profile:", "```", self.profile.rstrip(), "```"]
        return "\n".join(out)


def _render_quotas(rows: list[QuotaRow]) -> list[str]:
    out = [
        "at AWS's request quotas (the emulator's token buckets; time from the command's or the daemon's start):",
        "",
        "| scenario | writes | time (s) | floor (s) | time / floor | target | throttled answers / writes | target |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in rows:
        met_time = "met" if r.ratio <= r.target else "NOT met"
        met_share = "met" if r.throttled_share < QuotaRow.THROTTLED_TARGET else "NOT met"
        out.append(
            f"| {r.label} | {r.writes:,} | {r.seconds:.1f} | {r.floor_s:.1f} | {r.ratio:.2f}x | <= {r.target:.2f}x: {met_time} "
            f"| {sum(r.throttled.values()):,} ({100 * r.throttled_share:.1f} %) | < {100 * QuotaRow.THROTTLED_TARGET:.0f} %: {met_share} |"
        )
    out.append("")
    for r in rows:
        details = []
        if r.throttled:
            details.append(
                "throttled: " + ", ".join(f"{s}:{o} {n:,} of {r.attempts.get((s, o), 0):,} requests" for (s, o), n in sorted(r.throttled.items()))
            )
        details += r.notes
        if details:
            out.append(f"- {r.label}: " + "; ".join(details))
    out.append("")
    return out


RESULTS = Results()


def summarize(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f} s"
    return f"median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f}, {len(values)} runs)"
