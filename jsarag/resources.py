"""Cluster resources per rule: the config's `resources` section (typed here, schema in
schemas/config.schema.yaml), what each rule's job asks for (`rule_resources`, used by `res()` in
rules/common.smk), and how the train job is launched (`train_launcher`). Sizing lives only here
and in the config."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from jsarag import InputError
from jsarag.config import Section


@dataclass
class RuleResources(Section):
    """What one rule's job asks a cluster for (Snakemake `resources:`; the SLURM plugin turns them
    into sbatch options). cpus_per_task None: the rule's threads. gpu_model and slurm_extra are
    passed only when set: account, partition and GPU model are the user's, never the code's.
    gres: ask for the GPUs as a generic resource, `--gres=gpu[:MODEL]:N` (the SLURM plugin's `gres`
    resource), for clusters that refuse `--gpus`; the plugin takes `gpu` and `gres` as mutually
    exclusive, so `gpu` and `gpu_model` then go into the gres string instead."""
    runtime: int = 30  # minutes
    mem_mb: int = 2000
    cpus_per_task: int | None = None
    gpu: int = 0  # per node; > 1 on train: data-parallel, one process per GPU (train_launcher, jsarag/train/distributed.py)
    gpu_model: str | None = None
    gres: bool = False
    slurm_extra: str | None = None
    nodes: int = 1  # train only: > 1 spans that many nodes of `gpu` GPUs each (SLURM; mem_mb, cpus_per_task per node)


def _res(**kw):
    return field(default_factory=lambda: RuleResources(**kw))


@dataclass
class ResourcesConfig(Section):
    """resources: one entry per rule that runs as a cluster job; a config gives only what it
    changes (merged key by key over these defaults, sized for the embedded default). The rules
    without an entry are `localrules` (rules/common.smk): downloads need the network and the
    report rules take seconds."""
    prepare_corpus: RuleResources = _res(runtime=30, mem_mb=4000)
    prepare_dataset: RuleResources = _res(runtime=30, mem_mb=4000)
    export_models: RuleResources = _res(runtime=30, mem_mb=4000)
    bm25_index: RuleResources = _res(runtime=30, mem_mb=4000)
    dense_shard: RuleResources = _res(runtime=60, mem_mb=4000)
    dense_index: RuleResources = _res(runtime=30, mem_mb=4000)  # merges the shards
    retrieval_baselines: RuleResources = _res(runtime=30, mem_mb=4000)
    train: RuleResources = _res(runtime=120, mem_mb=8000)
    evaluate: RuleResources = _res(runtime=60, mem_mb=8000)
    mis_sweep: RuleResources = _res(runtime=60, mem_mb=8000)
    step_cost: RuleResources = _res(runtime=60, mem_mb=12000)  # the three methods' trainers at once
    zero_shot: RuleResources = _res(runtime=60, mem_mb=8000)  # the untrained generator on the test split
    verify_estimators: RuleResources = _res(runtime=30, mem_mb=4000)

    def check(self, where: str) -> None:
        for name in self.__dataclass_fields__:
            if name != "train" and getattr(self, name).nodes != 1:
                raise InputError(f"{where}.{name}.nodes: only the train job spans nodes")
        if self.train.nodes > 1 and self.train.gpu < 2:
            raise InputError(f"{where}.train.nodes: {self.train.nodes} nodes need gpu >= 2 per node (got {self.train.gpu})")

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "resources"):
        defaults = cls()
        d = d or {}
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected a mapping, got {type(d).__name__}")
        merged = {k: {**getattr(defaults, k).to_dict(), **v} if isinstance(v, dict) and hasattr(defaults, k) else v
                  for k, v in d.items()}
        return super().from_dict(merged, where)


# The SIGTERM lead of the train job (sbatch --signal=TERM@LEAD): after the signal, the ranks finish
# their step, rank 0 writes the checkpoint, and all exit 75 (jsarag/train/preemption.py); the ranks
# are srun tasks, so nothing kills them before the time limit (train_launcher). At paper shape the
# checkpoint is 8.29 GB (LoRA r=8 of Mistral-7B and two bge-large query encoders, fp32, with AdamW's
# moments: jsarag/train/checkpoint.py). benchmarks/checkpoint_write.py wrote 1/8 of it (1.04 GB,
# fsync included) at 106-189 MB/s on a local disk: 44-79 s at full size. The lead is twice the time of
# one step (60 s assumed at most) and the write at 106 MB/s, to the minute above.
PAPER_CHECKPOINT_BYTES = 8_288_000_000
WRITE_BYTES_PER_S = 106e6  # the slower of the two measured writes; a slower shared filesystem needs a longer lead
STEP_S = 60


def signal_lead_s(checkpoint_bytes: float = PAPER_CHECKPOINT_BYTES, write_bytes_per_s: float = WRITE_BYTES_PER_S,
                  step_s: float = STEP_S) -> int:
    """Seconds between SIGTERM and the time limit: twice a step and a checkpoint write, in whole minutes."""
    return 60 * math.ceil(2 * (step_s + checkpoint_bytes / write_bytes_per_s) / 60)


PREEMPT_SIGNAL = f"--signal=TERM@{signal_lead_s()}"  # the trainer checkpoints on it (jsarag/train/preemption.py)
SRUN_WAIT_S = 120  # once a rank has exited, srun kills the others this much later (a crashed rank's peers wait in a collective)


def train_ranks(r: RuleResources) -> int:
    """Processes of the train job per node: one per GPU."""
    return max(1, r.gpu)


def rule_resources(cfg: dict, rule: str, threads: int) -> dict:
    """The `resources:` of a rule's job, from the config's resources section. A train job of more
    than one process is an MPI-style job of the SLURM plugin (`mpi`, `tasks_per_node`): the plugin's
    job step then runs the rule's shell in the batch step, and the shell's srun starts one task per
    GPU (train_launcher); cpus_per_task is per task. Over several nodes the GPUs are asked per node
    (gres gpu:N)."""
    r = getattr(ResourcesConfig.from_dict(cfg.get("resources")), rule)
    out = {"runtime": r.runtime, "mem_mb": r.mem_mb, "cpus_per_task": r.cpus_per_task or threads}
    if r.gres:
        if r.gpu:
            out["gres"] = ":".join(["gpu", *([r.gpu_model] if r.gpu_model else []), str(r.gpu)])
    else:
        out["gpu"] = r.gpu
        if r.gpu_model:
            out["gpu_model"] = r.gpu_model
    if rule == "train":
        if r.runtime * 60 < 2 * signal_lead_s():
            raise InputError(f"resources.train.runtime: {r.runtime} min leaves too little training before the SIGTERM "
                             f"{signal_lead_s()} s ahead of the time limit (at least {2 * signal_lead_s() // 60} min)")
        ranks = train_ranks(r)
        if r.nodes > 1 or ranks > 1:
            out.update(cpus_per_task=max(1, out["cpus_per_task"] // ranks), mpi="srun", tasks_per_node=ranks, nodes=r.nodes)
        if r.nodes > 1 and "gpu" in out:  # over several nodes the GPUs are asked per node
            del out["gpu"]
            out["gres"] = f"gpu:{out.pop('gpu_model')}:{r.gpu}" if "gpu_model" in out else f"gpu:{r.gpu}"
    extra = " ".join(x for x in (PREEMPT_SIGNAL if rule == "train" else None, r.slurm_extra) if x)
    if extra:
        out["slurm_extra"] = extra
    return out


def srun_line(cfg: dict) -> str:
    """srun of the train job's ranks: one task per GPU on each node, task 0 on the first node."""
    r = ResourcesConfig.from_dict(cfg.get("resources")).train
    ranks, cpus = train_ranks(r), rule_resources(cfg, "train", cfg["train"]["common"]["threads"])["cpus_per_task"]
    gres = f" --gres=gpu:{r.gpu}" if r.gpu else ""
    return (f"srun --nodes={r.nodes} --ntasks-per-node={ranks} --cpus-per-task={cpus}{gres} --distribution=block "
            f"--kill-on-bad-exit=0 --wait={SRUN_WAIT_S} python -m jsarag.train.launch")


def train_launcher(cfg: dict) -> str:
    """The shell words that start the trainer; the train rule appends its arguments.
    - one process: `exec python -m jsarag.train`;
    - one per GPU, in a SLURM job: srun, one task per GPU, each its own rank (jsarag/train/launch.py);
      no agent sits between SLURM and the ranks, so SIGTERM reaches them at once and nothing kills
      them 30 s later, as torchrun's agent does (its PContext.close default);
    - one per GPU outside SLURM (one node): torchrun --standalone."""
    r = ResourcesConfig.from_dict(cfg.get("resources")).train
    ranks = train_ranks(r)
    if r.nodes == 1 and ranks == 1:
        return "exec python -m jsarag.train"
    local = f"set -- torchrun --standalone --nproc-per-node {ranks} -m jsarag.train" if r.nodes == 1 else \
        f"echo 'resources.train.nodes: {r.nodes} nodes need a SLURM job (--profile profiles/slurm)' >&2; exit 2"
    return f'if [ -n "${{SLURM_JOB_ID:-}}" ]; then set -- {srun_line(cfg)}; else {local}; fi; exec "$@"'
