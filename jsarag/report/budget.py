"""Where a run's minutes went: the workflow's benchmark files summed per rule
(`python -m jsarag.report budget [--root DIR] [--cores N]`).

Every rule writes one Snakemake benchmark file per job, benchmarks/out/<rule>/<wildcards>.tsv: a
header line (`s  h:m:s  max_rss ... cpu_time`) and one line per repeat. Per rule this sums the
jobs' wall seconds (`s`) and CPU seconds (`cpu_time`: user + system of the job's processes), and
gives each rule's share of the CPU seconds. On a machine of N cores the CPU seconds over N are a
floor for the run's wall time whatever the schedule (a job that keeps one core busy costs one
core-second per second), so `cpu / N` says what a budget can hold, rule by rule; the wall sum
over-counts jobs that ran side by side.
"""
from __future__ import annotations

from pathlib import Path

from jsarag import InputError

NEEDED = ("s", "cpu_time")


def read_benchmark(path: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one benchmark file, its repeats summed; a malformed file is an InputError naming it and the line."""
    lines = path.read_text().splitlines()
    if not lines:
        raise InputError(f"{path}: empty benchmark file")
    head = lines[0].split("\t")
    missing = [c for c in NEEDED if c not in head]
    if missing:
        raise InputError(f"{path}:1: no column {', '.join(missing)} in the header (a Snakemake benchmark file has s ... cpu_time)")
    if len(lines) < 2:
        raise InputError(f"{path}: a header and no measurement")
    wall = cpu = 0.0
    for n, line in enumerate(lines[1:], start=2):
        row = dict(zip(head, line.split("\t")))
        try:
            wall, cpu = wall + float(row["s"]), cpu + float(row["cpu_time"])
        except (KeyError, ValueError):
            raise InputError(f"{path}:{n}: s and cpu_time must be numbers, got {line!r}") from None
    return wall, cpu


def rule_times(bench_dir: str | Path) -> list[dict]:
    """One row per rule: jobs, wall_s, cpu_s, cpu_share; sorted by CPU seconds, largest first."""
    root = Path(bench_dir)
    files = sorted(root.rglob("*.tsv"))
    if not files:
        raise InputError(f"{root}: no benchmark files (*.tsv); run the workflow first")
    rows: dict[str, dict] = {}
    for f in files:
        wall, cpu = read_benchmark(f)
        r = rows.setdefault(f.relative_to(root).parts[0], {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0})
        r["jobs"] += 1
        r["wall_s"] += wall
        r["cpu_s"] += cpu
    total = sum(r["cpu_s"] for r in rows.values()) or 1.0
    out = [{"rule": k, **v, "cpu_share": v["cpu_s"] / total} for k, v in rows.items()]
    return sorted(out, key=lambda r: -r["cpu_s"])


def budget_table(bench_dir: str | Path, cores: int) -> str:
    """Markdown: per rule, jobs, wall and CPU minutes, CPU share and the floor on `cores` cores; then the totals."""
    if cores < 1:
        raise InputError(f"--cores must be >= 1, got {cores}")
    rows = rule_times(bench_dir)
    lines = [f"| rule | jobs | wall min (sum) | CPU min | CPU share | floor on {cores} cores, min |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['rule']} | {r['jobs']} | {r['wall_s'] / 60:.1f} | {r['cpu_s'] / 60:.1f} | {100 * r['cpu_share']:.1f}% "
                     f"| {r['cpu_s'] / 60 / cores:.1f} |")
    wall, cpu = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
    lines.append(f"| all | {sum(r['jobs'] for r in rows)} | {wall / 60:.1f} | {cpu / 60:.1f} | 100% | {cpu / 60 / cores:.1f} |")
    return "\n".join(lines) + "\n"
