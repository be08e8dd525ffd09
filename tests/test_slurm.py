"""The tiny workflow through `--profile profiles/slurm` on a real single-node SLURM (started by
tests/slurm/start.sh, stopped by tests/slurm/stop.sh): every job of a non-local rule goes through
sbatch, the local rules do not, and the tables equal those of a local run of the same config.
Skipped only where SLURM is absent and cannot be installed (start.sh exits 3)."""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_workflow import CONFIG, make_inputs

from jsarag.layout import TABLES
from jsarag.resources import ResourcesConfig

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "tests" / "slurm"
LOCAL_RULES = {"all", "download", "report_tables", "report_figures", "claims_check"}
RUN_TIMEOUT = 1500  # s, the whole SLURM run; each job also has its runtime as a hard limit


@pytest.fixture(scope="module")
def slurm_env():
    env = dict(os.environ)  # the state folder: JSARAG_SLURM_STATE or start.sh's default (munged must reach it)
    try:
        r = subprocess.run(["bash", str(SLURM / "start.sh")], capture_output=True, text=True, env=env, timeout=900)
        if r.returncode == 3:
            pytest.skip(f"SLURM cannot be installed here: {r.stderr.strip()[-500:]}")
        assert r.returncode == 0, r.stderr[-3000:]
        env["SLURM_CONF"] = re.search(r"SLURM_CONF=(\S+)", r.stdout).group(1)
        yield env
    finally:
        subprocess.run(["bash", str(SLURM / "stop.sh")], env=env, timeout=120)


def write_config(d: Path) -> None:
    """The tiny config, with every cluster rule asking for 10 minutes and 2 GB (the node has 2 CPUs)."""
    make_inputs(d)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["resources"] = {rule: {"runtime": 10, "mem_mb": 2000} for rule in ResourcesConfig.__dataclass_fields__}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def snakemake(workdir: Path, *args, env=None) -> subprocess.Popen:
    env = {**(env or os.environ), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def finish(p: subprocess.Popen) -> str:
    try:
        out, _ = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    assert p.returncode == 0, out[-6000:]
    return out


def table(d: Path, name: str) -> list[dict]:
    with open(d / "results" / "tables" / f"{name}.csv") as f:
        return list(csv.DictReader(f))


def test_tiny_workflow_on_slurm_matches_a_local_run(slurm_env, tmp_path):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for d in (on_slurm, local):
        write_config(d)
    local_run = snakemake(local, "--cores", "1")  # meanwhile, the same config locally (SLURM jobs mostly wait)
    t0 = time.perf_counter()
    log = finish(snakemake(on_slurm, "--profile", str(REPO / "profiles" / "slurm"), "--slurm-init-seconds-before-status-checks", "5",
                           "--jobs", "4", env=slurm_env))
    print(f"SLURM run of the tiny workflow: {time.perf_counter() - t0:.0f} s")
    finish(local_run)
    # the jobs Snakemake ran, by rule, and those it submitted with sbatch (the plugin names the rule in each job's log path)
    ran = Counter(re.findall(r"^(?:local)?rule (\w+):", log, flags=re.M))
    submitted = Counter(re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/", log))
    cluster_rules = {rule: n for rule, n in ran.items() if rule not in LOCAL_RULES}
    assert {"train", "evaluate", "dense_index", "verify_estimators"} <= set(cluster_rules)
    assert dict(submitted) == cluster_rules, (submitted, ran)
    assert all(f"localrule {rule}:" in log for rule in LOCAL_RULES)
    for name in TABLES:
        if name == "cost":  # seconds and memory: measured, not reproducible
            continue
        assert table(on_slurm, name) == table(local, name), name
    claims = [[line for line in (d / "results" / "claims_check.txt").read_text().splitlines() if "cost" not in line]
              for d in (on_slurm, local)]  # cost claims compare measured seconds
    assert claims[0] == claims[1] and len(claims[0]) > 3


def test_resources_merge_over_the_defaults_and_unknown_keys_are_named():
    from jsarag import InputError
    from jsarag.resources import PREEMPT_SIGNAL, rule_resources, train_launcher

    cfg = {"resources": {"train": {"gpu": 4, "gpu_model": "a100"}}}
    r = rule_resources(cfg, "train", threads=8)
    assert r == {"runtime": ResourcesConfig().train.runtime, "mem_mb": ResourcesConfig().train.mem_mb, "cpus_per_task": 8, "gpu": 4,
                 "gpu_model": "a100", "slurm_extra": PREEMPT_SIGNAL}
    assert train_launcher(cfg) == "torchrun --standalone --nproc-per-node 4" and train_launcher({}) == "python"
    assert "slurm_extra" not in rule_resources({}, "evaluate", 2) and "gpu_model" not in rule_resources({}, "evaluate", 2)
    with pytest.raises(InputError, match=r"resources\.train\.gpus"):
        ResourcesConfig.from_dict({"train": {"gpus": 2}})


def test_paper_dry_run_under_the_profile_lists_every_job_with_its_resources():
    dry = ["-n", "--forceall", "--profile", "profiles/slurm", "--configfile", "configs/paper.yaml"]
    r = subprocess.run([sys.executable, "-m", "snakemake", *dry],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = re.findall(r"^(local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", r.stdout + r.stderr, flags=re.M)
    by_rule = {rule: (bool(local), res) for local, rule, res in jobs}  # a dry run does not mark local rules
    assert set(by_rule) - LOCAL_RULES == set(ResourcesConfig.__dataclass_fields__)
    train = by_rule["train"][1]
    assert "gpu=4" in train and "runtime=2880" in train and "mem_mb=192000" in train and "--signal=TERM@300" in train
