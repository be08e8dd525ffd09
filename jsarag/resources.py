"""Cluster resources per rule: the config's `resources` section (typed here, schema in
schemas/config.schema.yaml), what each rule's job asks for (`rule_resources`, used by `res()` in
rules/common.smk), and how the train job is launched (`train_launcher`). Sizing lives only here
and in the config."""
from __future__ import annotations

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
    gpu: int = 0  # > 1 on train: data-parallel over that many GPUs (torchrun, jsarag/train/distributed.py)
    gpu_model: str | None = None
    gres: bool = False
    slurm_extra: str | None = None


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
    zero_shot: RuleResources = _res(runtime=60, mem_mb=8000)  # the untrained generator on the test split
    verify_estimators: RuleResources = _res(runtime=30, mem_mb=4000)

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "resources"):
        defaults = cls()
        d = d or {}
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected a mapping, got {type(d).__name__}")
        merged = {k: {**getattr(defaults, k).to_dict(), **v} if isinstance(v, dict) and hasattr(defaults, k) else v
                  for k, v in d.items()}
        return super().from_dict(merged, where)


PREEMPT_SIGNAL = "--signal=TERM@300"  # SIGTERM 5 min before the time limit: the trainer checkpoints (jsarag/train/preemption.py)


def rule_resources(cfg: dict, rule: str, threads: int) -> dict:
    """The `resources:` of a rule's job, from the config's resources section."""
    r = getattr(ResourcesConfig.from_dict(cfg.get("resources")), rule)
    out = {"runtime": r.runtime, "mem_mb": r.mem_mb, "cpus_per_task": r.cpus_per_task or threads}
    if r.gres:
        if r.gpu:
            out["gres"] = ":".join(["gpu", *([r.gpu_model] if r.gpu_model else []), str(r.gpu)])
    else:
        out["gpu"] = r.gpu
        if r.gpu_model:
            out["gpu_model"] = r.gpu_model
    extra = " ".join(x for x in (r.slurm_extra, PREEMPT_SIGNAL if rule == "train" else None) if x)
    if extra:
        out["slurm_extra"] = extra
    return out


def train_launcher(cfg: dict) -> str:
    """`python`, or torchrun with one process per GPU when the train job asks for more than one."""
    gpus = ResourcesConfig.from_dict(cfg.get("resources")).train.gpu
    return "python" if gpus <= 1 else f"torchrun --standalone --nproc-per-node {gpus}"
