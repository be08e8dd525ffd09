"""The ranks of a multi-GPU training job under SLURM: one `srun` task per GPU, with no agent
between SLURM and the trainer, so that a signal reaches every rank straight away and nothing kills
a rank while it writes its checkpoint (jsarag/train/preemption.py).

`srun ... python -m jsarag.train.launch ARGS` (the launch line of jsarag.resources.train_launcher)
sets the process-group variables that torchrun would set, from SLURM's, then runs
`python -m jsarag.train ARGS` in the same process (jsarag.train.distributed.DataParallel.from_env
reads them):

    RANK        = SLURM_PROCID      the task's rank in the job step
    LOCAL_RANK  = SLURM_LOCALID     its rank on its node (its GPU: cuda:LOCAL_RANK)
    WORLD_SIZE  = SLURM_NTASKS      tasks of the step
    GROUP_RANK  = SLURM_NODEID      its node's rank
    MASTER_ADDR = the first host of SLURM_STEP_NODELIST (SLURM_JOB_NODELIST): task 0's node, where
                  rank 0 serves the rendezvous (srun --distribution=block puts task 0 there)
    MASTER_PORT = a port from the job id, so that two jobs sharing a node do not meet

torchrun still works: `torchrun ... -m jsarag.train` sets these itself (this module refuses to run
under it, as SLURM's variables would then describe the wrong processes).
"""
from __future__ import annotations

import os
import re
import sys

from jsarag import InputError

PORT_BASE, PORT_SPAN = 15000, 15000  # ports 15000-29999: below Linux's ephemeral range (32768-60999)


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of SLURM's compressed node list, in order, as `scontrol show hostnames` gives
    them: "gpu[01-03,07]" -> gpu01 gpu02 gpu03 gpu07; "r[1-2]n[01-02]" -> r1n01 r1n02 r2n01 r2n02.
    Zero padding follows the width of the range's first number."""
    hosts, depth, start = [], 0, 0
    for i, ch in enumerate(nodelist + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            if i > start:
                hosts += _expand_one(nodelist[start:i], nodelist)
            start = i + 1
        if depth not in (0, 1):
            raise InputError(f"SLURM node list {nodelist!r}: nested or unbalanced brackets")
    if depth or not hosts:
        raise InputError(f"SLURM node list {nodelist!r}: no host")
    return hosts


def _expand_one(name: str, whole: str) -> list[str]:
    """One entry of the list: a prefix, then bracketed ranges and literal parts, in any number."""
    m = re.search(r"\[([^\]]*)\]", name)
    if not m:
        if "]" in name or not name:
            raise InputError(f"SLURM node list {whole!r}: malformed name {name!r}")
        return [name]
    values = []
    for part in m.group(1).split(","):
        r = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not r or (r.group(2) is not None and int(r.group(2)) < int(r.group(1))):
            raise InputError(f"SLURM node list {whole!r}: malformed range {part!r}")
        lo, hi, width = int(r.group(1)), int(r.group(2) or r.group(1)), len(r.group(1))
        values += [str(v).zfill(width) for v in range(lo, hi + 1)]
    rest = name[m.end():]
    tails = _expand_one(rest, whole) if rest else [""]
    return [name[: m.start()] + v + t for v in values for t in tails]


def rendezvous_port(job_id: int) -> int:
    return PORT_BASE + job_id % PORT_SPAN


def process_group_env(env: dict) -> dict[str, str]:
    """torchrun's variables for this srun task, from SLURM's (see the module docstring)."""
    if "TORCHELASTIC_RUN_ID" in env:
        raise InputError("jsarag.train.launch runs under srun, one task per GPU; under torchrun, run `python -m jsarag.train`")
    need = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_NODEID", "SLURM_JOB_ID")
    missing = [k for k in need if k not in env]
    if missing or not (env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")):
        raise InputError(f"jsarag.train.launch: not an srun task (missing {', '.join(missing) or 'SLURM_JOB_NODELIST'}); "
                         "it is started by `srun` inside a SLURM job")
    nodelist = env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"]
    return {"RANK": env["SLURM_PROCID"], "LOCAL_RANK": env["SLURM_LOCALID"], "WORLD_SIZE": env["SLURM_NTASKS"],
            "GROUP_RANK": env["SLURM_NODEID"], "MASTER_ADDR": expand_nodelist(nodelist)[0],
            "MASTER_PORT": str(rendezvous_port(int(env["SLURM_JOB_ID"])))}


def main(argv=None):
    from jsarag.cli import run_cli

    run_cli(lambda: os.environ.update(process_group_env(os.environ)))
    from jsarag.train.__main__ import main as train_main

    return train_main(argv)


if __name__ == "__main__":
    sys.exit(main())
