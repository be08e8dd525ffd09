"""The config's one home: load and validate the YAML, then build one typed section per stage.

- `load_config(path)` reads a YAML file (file:line on a syntax error, duplicate keys refused).
- `validate_config(cfg)` checks it against `schemas/config.schema.yaml` through
  `snakemake.utils.validate`, plus cross-references; every problem names its key path.
- `Section` is the base of every typed config: unknown keys are refused by name, values are
  type-checked, and each default is written once, in its dataclass.
- `job_params(cfg, stage, ...)` is what a rule hands its job: only the sections that job reads, as
  JSON, so that editing one section reruns only the jobs that read it. The stage's CLI turns it
  back into typed sections with `jsarag.cli.read_params`.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from jsarag import InputError

SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"


# -- loading and validation -------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def read_yaml(path: str | Path):
    """Parse a YAML file; a syntax error or a duplicate key names file:line."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{line}: malformed YAML ({getattr(e, 'problem', e)})") from None


def load_config(path: str | Path) -> dict:
    """Read and validate a config file."""
    cfg = read_yaml(path)
    validate_config(cfg, source=str(path))
    return cfg


def _key_path(parts) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _describe(err) -> str:
    import jsonschema

    if err.validator in ("oneOf", "anyOf") and err.context:
        # prefer the branch that got furthest (deepest path), then jsonschema's relevance order
        subs = [e for e in err.context if e.validator != "required"] or list(err.context)
        deepest = max(len(e.absolute_path) for e in subs)
        err = jsonschema.exceptions.best_match([e for e in subs if len(e.absolute_path) == deepest]) or err
    where = list(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            return f"{_key_path([*where, extra[0]])}: unknown key (allowed: {', '.join(sorted(allowed)) or 'none'})"
    if err.validator == "required":
        missing = [k for k in err.validator_value if isinstance(err.instance, dict) and k not in err.instance]
        if missing:
            return f"{_key_path([*where, missing[0]])}: required key missing"
    return f"{_key_path(where)}: {err.message}"


def validate_config(cfg, source: str = "config") -> dict:
    """Raise InputError (with the key path) if `cfg` breaks the schema, a cross-reference, or a
    typed section."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    if not isinstance(cfg, dict):
        raise InputError(f"{source}: the config must be a mapping")
    try:
        validate(copy.deepcopy(cfg), str(SCHEMA), set_default=False)
    except WorkflowError as e:
        # snakemake raises WorkflowError while handling jsonschema's ValidationError
        cause = next((c for c in (e.__cause__, e.__context__) if isinstance(c, jsonschema.ValidationError)), None)
        raise InputError(f"{source}: {_describe(cause) if cause else e}") from None
    _cross_check(cfg, source)
    try:  # every typed section builds: the dataclasses' own checks run before any job
        for method in cfg["methods"]:
            for dataset in [None, *cfg["datasets"]]:
                train_section(cfg, method, cfg["seeds"][0], dataset)
        for dataset in [None, *cfg["datasets"]]:
            evaluate_section(cfg, dataset)
        from jsarag.resources import ResourcesConfig

        ResourcesConfig.from_dict(cfg.get("resources"), "resources")
    except InputError as e:
        raise InputError(f"{source}: {e}") from None
    return cfg


def _cross_check(cfg: dict, source: str) -> None:
    downloads = cfg["downloads"]

    def need_download(key, where):
        if key not in downloads:
            raise InputError(f"{source}: {where}: download {key!r} is not defined under downloads "
                             f"(defined: {', '.join(sorted(downloads)) or 'none'})")

    for name, c in cfg["corpora"].items():
        need_download(c["download"], f"corpora.{name}.download")
    for name, d in cfg["datasets"].items():
        if d["corpus"] not in cfg["corpora"]:
            raise InputError(f"{source}: datasets.{name}.corpus: corpus {d['corpus']!r} is not defined under corpora "
                             f"(defined: {', '.join(sorted(cfg['corpora']))})")
        if "download" in d:
            need_download(d["download"], f"datasets.{name}.download")
        if not any(s in d["members"] for s in ("train", "dev", "test")):
            raise InputError(f"{source}: datasets.{name}.members: needs at least one of train, dev, test")
        for m, v in d["members"].items():
            if isinstance(v, dict):
                need_download(v["download"], f"datasets.{name}.members.{m}.download")
            elif "download" not in d:
                raise InputError(f"{source}: datasets.{name}.members.{m}: a plain member path needs datasets.{name}.download")
        want_dialog = d["format"] in ("orquac", "doqa", "perlfaq")
        if d["format"] != "jsonl" and want_dialog != (d["task"] == "dialog"):
            raise InputError(f"{source}: datasets.{name}.task: format {d['format']} is a "
                             f"{'dialog' if want_dialog else 'qa'} format, task is {d['task']!r}")
    ks = cfg.get("evaluate", {}).get("k_values")
    if ks and max(ks) > 20:
        raise InputError(f"{source}: evaluate.k_values: at most 20 passages are retrieved, got {max(ks)}")
    ev = EvaluateConfig.from_dict(cfg.get("evaluate"), "evaluate")
    if "topk" in ev.decoding and ev.topk_decode > max(ev.k_values):
        raise InputError(f"{source}: evaluate.topk_decode: top-k decoding reads the top {ev.topk_decode} passages, but only "
                         f"max(evaluate.k_values) = {max(ev.k_values)} are retrieved")


# -- typed sections -----------------------------------------------------------------------------
_SCALARS = {int: (int,), float: (int, float), bool: (bool,), str: (str,), list: (list, tuple), dict: (dict,), tuple: (list, tuple)}


def _check_type(value, tp, where: str):
    """Check `value` against a simple annotation (int, float, bool, str, list, dict, X | None, or a
    Section); return it, converted where the annotation asks for a Section or a tuple."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, __import__("types").UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where) if len(inner) == 1 else value
    if isinstance(tp, type) and issubclass(tp, Section):
        return value if isinstance(value, tp) else tp.from_dict(value, where)
    base = origin or tp
    ok = _SCALARS.get(base)
    if ok is None:
        return value
    if isinstance(value, bool) and base in (int, float):
        raise InputError(f"{where}: expected {base.__name__}, got a boolean")
    if not isinstance(value, ok):
        raise InputError(f"{where}: expected {base.__name__}, got {type(value).__name__} {value!r}")
    if base is tuple:
        return tuple(value)
    return value


@dataclass
class Section:
    """A typed config section. `from_dict` refuses unknown keys and ill-typed values by name."""

    @classmethod
    def from_dict(cls, d: dict | None, where: str = "config"):
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected a mapping, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - set(fields))
        if bad:
            raise InputError(f"{where}.{bad[0]}: unknown key (allowed: {', '.join(sorted(fields))})")
        hints = typing.get_type_hints(cls)
        kw = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in d.items()}
        missing = [n for n, f in fields.items() if n not in kw and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise InputError(f"{where}.{missing[0]}: required key missing")
        obj = cls(**kw)
        obj.check(where)
        return obj

    def check(self, where: str) -> None:
        """Cross-field checks of a section (override)."""

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def choice(value, allowed, where: str):
    if value not in allowed:
        raise InputError(f"{where}: must be one of {', '.join(map(str, allowed))}, got {value!r}")


@dataclass
class RetrieverConfig(Section):
    """models.retriever: the bi-encoder the prior and posterior retrievers start from."""
    source: str
    pooling: str = "mean"  # cls | mean
    normalize: bool = True
    max_length: int = 256

    def check(self, where):
        choice(self.pooling, ("cls", "mean"), f"{where}.pooling")


@dataclass
class GeneratorConfig(Section):
    """models.generator."""
    source: str
    kind: str = "causal"  # causal | seq2seq

    def check(self, where):
        choice(self.kind, ("causal", "seq2seq"), f"{where}.kind")


@dataclass
class IndexConfig(Section):
    """index: how the BM25 and dense indexes are built."""
    dense_batch_size: int = 16
    threads: int = 2
    shards: int = 1  # dense encoding jobs, one slice of passages.jsonl each (merged into one index)
    device: str = "auto"  # auto | cpu | cuda: where passages are encoded (bf16 autocast on a GPU, fp32 on the CPU)
    search_buffer_mb: int = 1024  # bound on the fp16 score matrix of one search tile (the retrieval baselines)

    def check(self, where):
        choice(self.device, ("auto", "cpu", "cuda"), f"{where}.device")


@dataclass
class IndexParams(Section):
    """The params of a dense-index or baseline job: the retriever and the index section."""
    retriever: RetrieverConfig
    index: IndexConfig = field(default_factory=IndexConfig)


def index_params(cfg: dict) -> dict:
    return {"retriever": cfg["models"]["retriever"], "index": cfg["index"]}


@dataclass
class MISSweepConfig(Section):
    proposals: list = field(default_factory=lambda: [2, 5, 10, 20])
    k: list = field(default_factory=lambda: [2, 3, 5])
    n_examples: int = 16


@dataclass
class StepCostConfig(Section):
    """evaluate.step_cost: the three methods' optimizer steps timed interleaved (jsarag.evaluate.step_cost)."""
    rounds: int = 12  # timed rounds, one step of each method per round
    warmup: int = 2  # untimed rounds first (allocator, caches, first-call compilation)

    def check(self, where):
        if self.rounds < 2:
            raise InputError(f"{where}.rounds: needs >= 2 rounds for a CI, got {self.rounds}")
        if self.warmup < 0:
            raise InputError(f"{where}.warmup: must be >= 0, got {self.warmup}")


@dataclass
class EvaluateConfig(Section):
    """evaluate: retrieval cut-offs, decoding, bootstrap, the MIS sweep, and which metric definitions
    are computed beside the suite's own (jsarag.evaluate.authors_metrics)."""
    k_values: list = field(default_factory=lambda: [1, 5, 10, 20])
    decoding: list = field(default_factory=lambda: ["top1"])  # top1 and/or topk
    topk_decode: int = 5
    max_new_tokens: int = 12
    batch_size: int = 16
    bootstrap: int = 1000
    # generation on the first generate_n test examples (the split is shuffled with a fixed seed), retrieval on all
    generate_n: int | None = None
    mis_sweep: MISSweepConfig = field(default_factory=MISSweepConfig)
    step_cost: StepCostConfig = field(default_factory=StepCostConfig)
    # authors: the authors' BLEU-1/BLEU-4/ROUGE-L (NLTK sentence BLEU, the rouge package) beside the suite's
    metrics: str = "suite"  # suite | authors
    # dpr: R@k/MRR under DPR's has_answers (Pyserini) beside answer containment
    hits: str = "containment"  # containment | dpr

    def check(self, where):
        choice(self.metrics, ("suite", "authors"), f"{where}.metrics")
        choice(self.hits, ("containment", "dpr"), f"{where}.hits")


@dataclass
class VerifyConfig(Section):
    """verify: the exact-gradient check on an enumerable knowledge base."""
    draws: int = 200


# -- what each job reads -----------------------------------------------------------------------
def as_json(obj) -> str:
    """A stable JSON string: a rule's params value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def train_section(cfg: dict, method: str, seed, dataset: str | None = None) -> object:
    """The typed training config of one method: train.common + train.<method> + the dataset's own
    `datasets.NAME.train` (e.g. longer targets for a dialog task) + the seed."""
    from jsarag.train.config import method_config

    own = (cfg["datasets"][dataset].get("train") or {}) if dataset is not None else {}
    merged = {**cfg["train"]["common"], **(cfg["train"].get(method) or {}), **own, "seed": int(seed)}
    return method_config(method, merged)


def evaluate_section(cfg: dict, dataset: str | None = None) -> dict:
    """evaluate, with the dataset's own `datasets.NAME.evaluate` over it (e.g. max_new_tokens)."""
    own = (cfg["datasets"][dataset].get("evaluate") or {}) if dataset is not None else {}
    return EvaluateConfig.from_dict({**(cfg.get("evaluate") or {}), **own}, f"datasets.{dataset}.evaluate" if own else "evaluate").to_dict()


def run_params(cfg: dict, dataset: str, method: str, seed, evaluate: bool = False) -> dict:
    """Everything a train (or, with `evaluate`, an evaluate) job reads: a changed evaluate section
    reruns evaluation only, not training."""
    out = {"method": method, "dataset": dataset, "task": cfg["datasets"][dataset]["task"],
           "train": train_section(cfg, method, seed, dataset).to_dict(),
           "retriever": cfg["models"]["retriever"], "generator": cfg["models"]["generator"]}
    if evaluate:
        out["evaluate"] = evaluate_section(cfg, dataset)
    return out


def step_cost_params(cfg: dict, dataset: str) -> dict:
    """What a step-cost job reads: each configured method's run params (first seed, with the evaluate section)."""
    return {m: run_params(cfg, dataset, m, cfg["seeds"][0], evaluate=True) for m in cfg["methods"]}


@dataclass
class RunParams(Section):
    """The parsed params of a train / evaluate / mis-sweep job."""
    method: str
    dataset: str
    task: str
    train: typing.Any  # the method's typed config, built in check()
    retriever: RetrieverConfig
    generator: GeneratorConfig
    evaluate: EvaluateConfig | None = None

    def check(self, where):
        choice(self.task, ("qa", "dialog"), f"{where}.task")
        from jsarag.train.config import method_config

        self.train = method_config(self.method, self.train)


def export_dtype(cfg: dict, role: str) -> str:
    """The dtype a model is exported in: bfloat16 for a generator trained on a GPU (train.common.device: cuda)."""
    return "bfloat16" if role == "generator" and cfg["train"]["common"].get("device") == "cuda" else "float32"


MAIN_METRIC = {"qa": "em", "dialog": "bleu4"}  # a dataset's main generation metric unless datasets.NAME.metric says
TASK_METRICS = {"qa": ("em", "f1"), "dialog": ("bleu4", "rouge_l", "f1")}  # and, with evaluate.metrics: authors, *_authors


@dataclass
class ReportConfig(Section):
    """What the report reads: datasets and their tasks, methods, seeds, the evaluate section, and
    the MIS settings of training (for the MIS table)."""
    datasets: dict  # dataset -> task (qa | dialog)
    methods: list
    seeds: list
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    mis_proposals: int | None = None
    mis_k: int | None = None
    main_metrics: dict = field(default_factory=dict)  # dataset -> its main generation metric (datasets.NAME.metric)

    def check(self, where):
        for name, task in self.datasets.items():
            choice(task, ("qa", "dialog"), f"{where}.datasets.{name}")
        for name, metric in self.main_metrics.items():
            if metric.endswith("_authors") and self.evaluate.metrics != "authors":
                raise InputError(f"datasets.{name}.metric: {metric} needs evaluate.metrics: authors")
            if metric not in TASK_METRICS[self.datasets[name]] and not metric.endswith("_authors"):
                raise InputError(f"datasets.{name}.metric: {metric} is not a {self.datasets[name]} metric "
                                 f"(one of {', '.join(TASK_METRICS[self.datasets[name]])})")

    def main_metric(self, dataset: str) -> str:
        """What a dataset is judged on: EM for short answers, BLEU-4 / ROUGE-L / F1 for long ones."""
        return self.main_metrics.get(dataset) or MAIN_METRIC[self.datasets[dataset]]

    @property
    def ks(self) -> list:
        return self.evaluate.k_values

    @property
    def n_boot(self) -> int:
        return self.evaluate.bootstrap


def report_params(cfg: dict) -> dict:
    """The sections the report reads: editing another section does not rerun the report."""
    jsa = train_section(cfg, "jsa", cfg["seeds"][0]) if "jsa" in cfg["methods"] else None
    return {"datasets": {d: v["task"] for d, v in cfg["datasets"].items()}, "methods": cfg["methods"], "seeds": cfg["seeds"],
            "main_metrics": {d: v["metric"] for d, v in cfg["datasets"].items() if v.get("metric")},
            "evaluate": cfg.get("evaluate") or {}, "mis_proposals": jsa.proposals if jsa else None, "mis_k": jsa.k if jsa else None}


if __name__ == "__main__":  # `python -m jsarag.config FILE...`: check configs (a YAML error names file:line)
    import sys

    from jsarag.cli import run_cli

    run_cli(lambda: [print(f"{p}: ok") for p in sys.argv[1:] if load_config(p)])
