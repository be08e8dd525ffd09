"""The tiny workflow through `--profile profiles/slurm` on a real single-node SLURM (started by
tests/slurm/start.sh, stopped by tests/slurm/stop.sh): every job of a non-local rule goes through
sbatch, the local rules do not, and the tables equal those of a local run of the same config.
Skipped only where SLURM is absent and cannot be installed (start.sh exits 3)."""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from test_workflow import CONFIG, make_inputs

from jsarag.layout import LAYOUT, TABLES, Layout
from jsarag.resources import ResourcesConfig

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "tests" / "slurm"
LOCAL_RULES = {"all", "download", "report_tables", "report_figures", "claims_check", "report_page"}
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

    cfg = {"resources": {"train": {"gpu": 4, "gpu_model": "a100"}}, "train": {"common": {"threads": 8}}}
    r = rule_resources(cfg, "train", threads=8)
    assert r == {"runtime": ResourcesConfig().train.runtime, "mem_mb": ResourcesConfig().train.mem_mb, "cpus_per_task": 2, "gpu": 4,
                 "gpu_model": "a100", "mpi": "srun", "tasks_per_node": 4, "nodes": 1, "slurm_extra": PREEMPT_SIGNAL}
    assert train_launcher({}) == "exec python -m jsarag.train"
    assert "slurm_extra" not in rule_resources({}, "evaluate", 2) and "gpu_model" not in rule_resources({}, "evaluate", 2)
    with pytest.raises(InputError, match=r"resources\.train\.gpus"):
        ResourcesConfig.from_dict({"train": {"gpus": 2}})
    with pytest.raises(InputError, match=r"resources\.evaluate\.nodes: only the train job spans nodes"):
        ResourcesConfig.from_dict({"evaluate": {"nodes": 2}})
    with pytest.raises(InputError, match=r"resources\.train\.nodes: 2 nodes need gpu >= 2 per node"):
        ResourcesConfig.from_dict({"train": {"nodes": 2, "gpu": 1}})
    with pytest.raises(InputError, match=r"resources\.train\.runtime: 8 min leaves too little training"):
        rule_resources({"resources": {"train": {"runtime": 8}}}, "train", 1)


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


# -- launch lines ---------------------------------------------------------------------------------
class _Resources(dict):
    """A job's resources as the SLURM plugin reads them (`.get` and attributes)."""
    __getattr__ = dict.get


def sbatch_line(resources: dict, threads: int) -> str:
    """The sbatch call that snakemake-executor-plugin-slurm builds for a job with these resources."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    job = SimpleNamespace(resources=_Resources(resources), threads=threads)
    validate_slurm_extra(job)
    params = {"run_uuid": "u", "slurm_logfile": "l", "comment_str": "c", "account": "", "partition": "", "workdir": "w"}
    return get_submit_command(job, params) + set_gres_string(job)


@pytest.mark.parametrize("nodes", [1, 2])
def test_launch_lines_for_one_and_two_nodes(nodes):
    from jsarag.resources import rule_resources, train_launcher

    train = {"gpu": 4, "nodes": nodes, "cpus_per_task": 32, "gpu_model": "a100"}
    cfg = {"resources": {"train": train}, "train": {"common": {"threads": 16}}}
    sbatch = sbatch_line(rule_resources(cfg, "train", 16), 16).split()
    assert {f"--nodes={nodes}", "--ntasks-per-node=4", "--cpus-per-task=8", "--signal=TERM@300"} <= set(sbatch), sbatch
    assert ("--gpus=a100:4" if nodes == 1 else "--gres=gpu:a100:4") in sbatch  # over nodes: GPUs per node
    assert not [w for w in sbatch if w.startswith(("--ntasks=", "--ntasks-per-gpu", "--gpus" if nodes > 1 else "--gres"))], sbatch
    launch = train_launcher(cfg)

    def words(env: dict) -> tuple[int, list[str]]:  # what the rule's shell would exec
        r = subprocess.run(["bash", "-c", launch.replace('exec "$@"', 'printf "%s\\n" "$@"') + " --out run"],
                           env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True)
        return r.returncode, r.stdout.split() or [r.stderr.strip()]

    srun = (f"srun --nodes={nodes} --ntasks-per-node=4 --cpus-per-task=8 --gres=gpu:4 --distribution=block --kill-on-bad-exit=0 "
            "--wait=120 python -m jsarag.train.launch --out run").split()
    assert words({"SLURM_JOB_ID": "7"}) == (0, srun)
    local = words({})
    if nodes == 1:
        assert local == (0, "torchrun --standalone --nproc-per-node 4 -m jsarag.train --out run".split())
    else:
        assert local[0] == 2 and "2 nodes need a SLURM job" in local[1][0]


def test_rank_variables_come_from_slurm_for_every_task_of_two_nodes():
    from jsarag import InputError
    from jsarag.train.launch import process_group_env, rendezvous_port

    ranks = []
    for proc in range(8):  # srun --nodes=2 --ntasks-per-node=4 --distribution=block: tasks 0-3 on gpu07, 4-7 on gpu08
        env = {"SLURM_PROCID": str(proc), "SLURM_LOCALID": str(proc % 4), "SLURM_NTASKS": "8", "SLURM_NODEID": str(proc // 4),
               "SLURM_JOB_ID": "123456", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_STEP_NODELIST": "gpu[07-08]"}
        ranks.append(process_group_env(env))
    assert [r["RANK"] for r in ranks] == [str(i) for i in range(8)] and [r["LOCAL_RANK"] for r in ranks] == list("01230123")
    assert {r["WORLD_SIZE"] for r in ranks} == {"8"} and [r["GROUP_RANK"] for r in ranks] == list("00001111")
    assert {(r["MASTER_ADDR"], r["MASTER_PORT"]) for r in ranks} == {("gpu07", str(rendezvous_port(123456)))}
    assert 15000 <= rendezvous_port(123456) < 30000 and rendezvous_port(123456) != rendezvous_port(123457)
    with pytest.raises(InputError, match="under torchrun, run `python -m jsarag.train`"):
        process_group_env({**env, "TORCHELASTIC_RUN_ID": "x"})
    with pytest.raises(InputError, match="not an srun task"):
        process_group_env({"SLURM_JOB_ID": "1"})


def test_node_lists_expand_as_scontrol_expands_them(slurm_env):
    from jsarag import InputError
    from jsarag.train.launch import expand_nodelist

    for nodelist in ("gpu[01-03,07]", "r[1-2]n[01-02]", "node1,node[3-4]", "x[009-011]", "gpu[1,3-4]-ib[0-1]", "vm", "a[8-10]"):
        r = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, env=slurm_env, timeout=30)
        assert r.returncode == 0, r.stderr
        assert expand_nodelist(nodelist) == r.stdout.split(), nodelist
    for bad in ("gpu[01-", "gpu[3-1]", "gpu[a]", ""):
        with pytest.raises(InputError, match="SLURM node list"):
            expand_nodelist(bad)


# -- preemption under SLURM -----------------------------------------------------------------------
PREEMPT_TIMEOUT = 300  # s, each wait of the preemption test


def wait_for(cond, what: str, logs: list[Path], proc: subprocess.Popen, timeout: float = PREEMPT_TIMEOUT, env=None):
    """Poll `cond` until it returns a true value; fail naming `what`, with squeue and the logs' tails,
    on timeout or when `proc` (the Snakemake run) has ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout and proc.poll() is None:
        got = cond()
        if got:
            return got
        time.sleep(0.1)
    why = f"timed out after {timeout} s" if proc.poll() is None else f"Snakemake ended (exit {proc.returncode})"
    q = subprocess.run(["squeue", "-t", "all"], capture_output=True, text=True, env=env, timeout=30).stdout
    tails = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())
    pytest.fail(f"{why} waiting for {what}\nsqueue:\n{q}\n{tails}")


def jobs(env, state: str) -> list[str]:
    r = subprocess.run(["squeue", "-h", "-t", state, "-o", "%i"], capture_output=True, text=True, env=env, timeout=30)
    return r.stdout.split()


def partition(env, state: str) -> None:
    subprocess.run(["scontrol", "update", "PartitionName=debug", f"State={state}"], check=True, env=env, timeout=30)


def steps_logged(metrics: Path) -> int:
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def preemption_config(d: Path) -> None:
    """JSA-RAG alone, 2 ranks (gloo, on the CPU) on the 2 countable GPUs of the test node: 8 examples,
    grad_accum 2, 10 epochs = 40 steps, a checkpoint every 2."""
    make_inputs(d)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["methods"] = ["jsa"]
    cfg["train"]["common"].update(epochs=10, grad_accum=2, checkpoint_every=2, valid_every=0, device="cpu", threads=2)
    cfg["resources"] = {"train": {"runtime": 10, "mem_mb": 3000, "gpu": 2}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def snakemake_to(log: Path, workdir: Path, *args, env=None) -> subprocess.Popen:
    env = {**(env or os.environ), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    with open(log, "w") as out:
        args = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)


def finished(p: subprocess.Popen, log: Path, what: str, timeout: float = PREEMPT_TIMEOUT) -> str:
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"{what}: still running after {timeout} s\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert p.returncode == 0, f"{what} failed:\n{text[-6000:]}"
    return text


@pytest.fixture(scope="module")
def preempted(slurm_env, tmp_path_factory):
    """One training job under the profile, preempted twice with `scancel --signal=TERM`:
    A gets SIGTERM after its second checkpoint, stops at step a and exits 75; the profile resubmits
    it; B resumes from last.pt at step a, gets SIGTERM two checkpoints later and stops at step b;
    before the next resubmission last.pt is cut to half its size (a torn write), and C resumes from
    previous.pt and trains to the end. The partition is down while a job exits, so that the next one
    waits and the log of the last one is read first. Meanwhile the same config trains locally,
    uninterrupted (torchrun, 2 ranks)."""
    root = tmp_path_factory.mktemp("preempt")
    on_slurm, local = root / "slurm", root / "local"
    t0 = time.monotonic()
    clock = lambda what: print(f"preemption test: {what} at {time.monotonic() - t0:.0f} s", flush=True)  # noqa: E731
    preemption_config(on_slurm)
    deps = [LAYOUT.passages("vital"), LAYOUT.dense_index("vital"), LAYOUT.model("retriever"), LAYOUT.model("generator"),
            LAYOUT.split("nq", "train"), LAYOUT.split("nq", "valid")]
    finished(snakemake_to(root / "deps.log", on_slurm, "--cores", "2", *deps), root / "deps.log", "the train job's inputs")
    clock("the train job's inputs built")
    subprocess.run(["cp", "-a", str(on_slurm), str(local)], check=True)
    target = LAYOUT.run("nq", "jsa", 0).model
    reference = snakemake_to(root / "local.log", local, "--cores", "2", target)
    sm = snakemake_to(root / "slurm.log", on_slurm, "--profile", str(REPO / "profiles" / "slurm"),
                      "--slurm-init-seconds-before-status-checks", "2", target, env=slurm_env)
    run = Layout(str(on_slurm)).run("nq", "jsa", 0)
    metrics, train_log = Path(run.train_log), on_slurm / "logs" / "train" / "nq" / "jsa" / "seed0.log"
    logs, seen, events = [train_log, root / "slurm.log"], [], {}
    try:
        for name, after in (("A", 4), ("B", 5)):  # B: 5 steps after its resume, so two checkpoints of its own
            start = events["A"]["stop"] if name == "B" else 0
            wait_for(lambda n=start + after: steps_logged(metrics) >= n, f"job {name} to log step {start + after}", logs, sm, env=slurm_env)
            running = jobs(slurm_env, "R")
            assert len(running) == 1, f"expected one running job, squeue has {running}"
            seen.append(running[0])
            partition(slurm_env, "DOWN")
            subprocess.run(["scancel", "--signal=TERM", running[0]], check=True, env=slurm_env, timeout=30)
            clock(f"job {name} ({running[0]}) sent SIGTERM")
            pending = wait_for(lambda: [j for j in jobs(slurm_env, "PD") if j not in seen], f"the resubmission of job {running[0]}",
                               logs, sm, env=slurm_env)
            text = train_log.read_text(errors="replace")
            stop = re.search(r"signal 15: checkpoint written at step (\d+); exiting with 75", text)
            assert stop, f"job {name} ({running[0]}) did not checkpoint on SIGTERM:\n{text[-3000:]}"
            events[name] = {"job": running[0], "stop": int(stop.group(1)), "log": text, "next": pending[0],
                            "last": torch.load(run.checkpoint, weights_only=False)["step"]}
            if name == "B":
                last = Path(run.checkpoint)
                last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
            partition(slurm_env, "UP")
        slurm_log = finished(sm, root / "slurm.log", "the SLURM run")
        clock("the SLURM run finished")
        finished(reference, root / "local.log", "the local run")
    finally:
        partition(slurm_env, "UP")
        for p in (sm, reference):
            if p.poll() is None:
                p.kill()
    events["C"] = {"job": events["B"]["next"], "log": train_log.read_text(errors="replace")}
    return {"events": events, "slurm": run, "local": Layout(str(local)).run("nq", "jsa", 0), "snakemake_log": slurm_log}


def exit_codes(log: str) -> dict[int, int]:
    """srun's word on each task's exit ("task 0: Exited with exit code 75", "tasks 0-1: ...")."""
    out = {}
    for tasks, code in re.findall(r"srun: error: \S+: tasks? ([\d,-]+): Exited with exit code (\d+)", log):
        for part in tasks.split(","):
            lo, _, hi = part.partition("-")
            out.update({t: int(code) for t in range(int(lo), int(hi or lo) + 1)})
    return out


def same_run(a, b) -> None:
    """Bit-identical trained weights and equal logs (but the timings)."""
    wa, wb = torch.load(Path(a.weights)), torch.load(Path(b.weights))
    assert wa.keys() == wb.keys() and len(wa) > 10
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} of {len(wa)} tensors differ from the uninterrupted run's, e.g. {differ[:3]}"
    drop = ("step_time", "tokens_per_s")
    rows = [[{k: v for k, v in json.loads(line).items() if k not in drop} for line in Path(r.train_log).read_text().splitlines()]
            for r in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) == 40


def test_scancel_term_exits_75_and_the_resubmitted_job_resumes_at_that_step(preempted):
    a, b = preempted["events"]["A"], preempted["events"]["B"]
    assert a["stop"] >= 4 and a["last"] == a["stop"]
    assert exit_codes(a["log"]) == {0: 75, 1: 75}, a["log"][-3000:]  # srun's word on both ranks: the code of a retry
    assert a["next"] == b["job"]
    assert len(re.findall(rf"resumed from \S*checkpoint/last\.pt at step {a['stop']} of 40", b["log"])) == 2, b["log"][-3000:]  # each rank
    submitted = re.findall(r"submitted with SLURM jobid (\d+)", preempted["snakemake_log"])
    assert submitted == [a["job"], b["job"], b["next"]], submitted
    print(f"SLURM: job {a['job']} stopped at step {a['stop']} (exit 75); job {b['job']} resumed there")
    same_run(preempted["local"], preempted["slurm"])


def test_a_torn_latest_checkpoint_before_the_resubmission_resumes_from_the_previous_one(preempted):
    b, c = preempted["events"]["B"], preempted["events"]["C"]
    assert b["last"] == b["stop"] and exit_codes(b["log"]) == {0: 75, 1: 75}, b["log"][-3000:]
    prev = re.search(r"resuming from \S+previous\.pt \(step (\d+)\) instead", c["log"])
    assert prev and "cannot resume from" in c["log"] and "last.pt" in c["log"], c["log"][-3000:]
    assert b["stop"] - 2 <= int(prev.group(1)) < b["stop"]
    assert len(re.findall(rf"resumed from \S*checkpoint/previous\.pt at step {prev.group(1)} of 40", c["log"])) == 2
    summary = json.loads(Path(preempted["slurm"].summary).read_text())
    assert summary["resumed"] and summary["steps"] == 40
    print(f"SLURM: job {b['job']} stopped at step {b['stop']}; last.pt torn; job {c['job']} resumed from previous.pt at step "
          f"{prev.group(1)}; the weights equal the uninterrupted run's")
    same_run(preempted["local"], preempted["slurm"])
