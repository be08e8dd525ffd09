"""The cost of an optimizer step of each method, measured side by side in one process
(`python -m jsarag.evaluate step-cost`, the workflow's step_cost rule; benchmarks/step_cost.py).

Timing the methods one after another (the training logs, or one child process per method) lets the
machine's load change between them: on a shared machine the JSA/RAG ratio of such a measurement
read 0.87 in one run and 1.52 in another. Here the trainers of all configured methods are built
once each, at the run's own shapes (k, proposals, token limits, LoRA layers, batch size,
grad_accum: the run params of the train rule), and their optimizer steps are timed interleaved:
round r runs one step of every method, in the order of the method list rotated by r (A B C, B C A,
C A B, ...), so that each method takes each place in a round equally often and an order effect
(a cache warmed by the step before) falls on every method alike. Every method's step in round r
takes the same micro-batches (the run's own data order, from the first method's trainer). The
first `warmup` rounds are run and recorded but left out of every statistic (allocator, caches,
first-call compilation). A step is the trainer's own code (Trainer.backward per micro-batch, then
Trainer.update), timed from before the first micro-batch's forward to after the update (after a
device synchronize on a GPU).

Statistics (`summarize`), over the R timed rounds:
- per method: seconds per 100 steps, 100 x the mean step time, with a 95% t-interval over rounds;
- per pair a/b (jsa/rag, jsa/vrag, vrag/rag): the ratio of step times, exp(mean_r log(t_a,r / t_b,r))
  (the geometric mean of the per-round ratios), with the 95% t-interval (Student's t, R - 1 df,
  scipy.stats.t) of that mean log ratio, exponentiated. The rounds are the pairs: a load that
  changes from round to round (slower than one round, a few seconds) scales both steps of a round
  and cancels in their ratio, which the per-method intervals cannot do. Logs make the ratio's
  interval symmetric in a/b (the b/a interval is the reciprocal) and turn multiplicative noise
  additive. A t-interval rather than a bootstrap: with about a dozen rounds a percentile bootstrap
  undercovers. The ratio of mean and of median step times are recorded beside it as descriptions.
  The interval treats rounds as independent; a load trend within a round is what rotation averages out.

Memory: each trainer holds its own generator (base and LoRA) and retrievers; nothing is shared, so
the job holds three models at once. The record gives the process's resident memory after each
build (cumulative), its peak, and the GPU's peak, so a reader sees whether the three fit. On the
embedded default (SmolLM2-135M, MiniLM; benchmarks/step_cost.py) the builds reached 0.5, 0.7 and
0.9 GB and the steps peaked at 3.7 GB resident; at paper scale three generators may not fit one GPU.
"""
from __future__ import annotations

import itertools
import logging
import os
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from jsarag import InputError

log = logging.getLogger("jsarag.evaluate")

PAIRS = (("jsa", "rag"), ("jsa", "vrag"), ("vrag", "rag"))
SHAPE_KEYS = ("k", "exact", "batch_size", "grad_accum", "max_input_tokens", "max_target_tokens", "proposals", "lora", "device",
              "gradient_checkpointing", "estimator", "n_samples", "variant")


def round_order(methods: Sequence[str], r: int) -> list[str]:
    """The order of the methods in round r: the list rotated by r."""
    i = r % len(methods)
    return list(methods[i:]) + list(methods[:i])


def interleave(steps: dict[str, Callable[[list], None]], batches: Sequence, rounds: int, warmup: int,
               clock: Callable[[], float] = time.perf_counter, progress: bool = False) -> dict:
    """Time one step of each method per round, `warmup` untimed rounds then `rounds` timed ones.
    `steps[m](micro_batches)` takes one optimizer step of method m; round r hands every method
    batches[r % len(batches)]. `clock` is read right before and right after each step. Returns
    {"order": [[method, ...] per round], "warmup_s": {m: [...]}, "step_s": {m: [...]}}."""
    from tqdm.auto import tqdm

    methods = list(steps)
    if not methods or not batches:
        raise InputError("step cost: needs at least one method and one batch")
    order, times = [], {m: [] for m in methods}
    for r in tqdm(range(warmup + rounds), desc="step cost (interleaved)", disable=not progress, mininterval=2):
        order.append(round_order(methods, r))
        for m in order[-1]:
            t0 = clock()
            steps[m](batches[r % len(batches)])
            times[m].append(clock() - t0)
    return {"order": order, "warmup_s": {m: t[:warmup] for m, t in times.items()},
            "step_s": {m: t[warmup:] for m, t in times.items()}}


def t_interval(x: Sequence[float]) -> tuple[float, float, float]:
    """Mean of x and its 95% t-interval (Student's t, len(x) - 1 df)."""
    from jsarag.report.stats import t_quantile

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2 or not np.isfinite(x).all():
        raise InputError(f"step cost: needs >= 2 finite per-round values, got {x.tolist()}")
    half = t_quantile(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def summarize(step_s: dict[str, Sequence[float]]) -> dict:
    """Per-method seconds per 100 steps and per-pair step-time ratios, each with its 95% CI (module doc)."""
    n = {len(t) for t in step_s.values()}
    if len(n) != 1:
        raise InputError(f"step cost: the methods have different numbers of rounds ({sorted(n)}): not paired")
    if any(v <= 0 for t in step_s.values() for v in t):
        raise InputError("step cost: a step time is not positive")
    per_method = {}
    for m, t in step_s.items():
        mean, lo, hi = t_interval(t)
        per_method[m] = {"seconds_per_100_steps": 100 * mean, "lo": 100 * lo, "hi": 100 * hi,
                         "median_s": float(np.median(t)), "n": len(t)}
    ratios = []
    for a, b in PAIRS:
        if a in step_s and b in step_s:
            ta, tb = np.asarray(step_s[a], float), np.asarray(step_s[b], float)
            m, lo, hi = t_interval(np.log(ta) - np.log(tb))
            ratios.append({"a": a, "b": b, "ratio": float(np.exp(m)), "lo": float(np.exp(lo)), "hi": float(np.exp(hi)),
                           "ratio_of_means": float(ta.mean() / tb.mean()), "ratio_of_medians": float(np.median(ta) / np.median(tb)),
                           "n": len(ta)})
    return {"per_method": per_method, "ratios": ratios}


# -- the trainers at the run's shapes ----------------------------------------------------------
def _sync(device: str) -> Callable[[], None]:
    if str(device).startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def stepper(trainer) -> Callable[[list], None]:
    """One optimizer step of `trainer` on a list of micro-batches: the trainer's own backward per
    micro-batch and its update (jsarag.train.loop.Trainer), timed to the device's end of work."""
    scale = trainer.dp.loss_scale(trainer.cfg.grad_accum)
    sync = _sync(trainer.model.device)

    def step(micro_batches: list) -> None:
        sync()
        for batch in micro_batches:
            trainer.backward(batch, scale)
        trainer.update()
        trainer.step += 1
        sync()
    return step


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines() if os.path.exists("/proc/self/status") else ():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_trainers(params: dict, examples: list[dict], passages: str, index: str, retriever: str, generator: str, out_dir: str):
    """One trainer per method of `params` ({method: RunParams}), each built as the train rule builds it."""
    from jsarag.model.factory import build_model
    from jsarag.train import TRAINERS
    from jsarag.train.distributed import DataParallel

    trainers, memory = {}, {}
    for m, p in params.items():
        cls = TRAINERS[m]
        dp = DataParallel.from_env(p.train.device)
        if dp.world > 1:
            raise InputError("step cost: runs in one process (the methods interleaved), not under torchrun")
        model = build_model(p.train, p.retriever, p.generator, retriever, generator, index, passages, cls.uses_posterior, device=dp.device)
        trainers[m] = cls(p.train, model, examples, os.path.join(out_dir, m), dp=dp)
        trainers[m].train_mode()
        memory[m] = rss_mb()
    return trainers, memory


def shared_batches(trainer, n_steps: int) -> list[list]:
    """The micro-batches of `n_steps` optimizer steps in the run's own data order (cycled if the run is shorter)."""
    micro = list(itertools.islice(itertools.cycle(list(trainer.batches(0))), n_steps * trainer.cfg.grad_accum))
    ga = trainer.cfg.grad_accum
    return [[b for _, b in micro[i * ga:(i + 1) * ga]] for i in range(n_steps)]


def check_same_data(params: dict) -> None:
    """Every method steps through the same micro-batches: the same batch size, grad_accum and seed."""
    keys = {m: (p.train.batch_size, p.train.grad_accum, p.train.seed) for m, p in params.items()}
    if len(set(keys.values())) > 1:
        raise InputError(f"step cost: the methods differ in (batch_size, grad_accum, seed): {keys}; one data sequence cannot serve all")


def measure(params: dict, examples: list[dict], passages: str, index: str, retriever: str, generator: str, rounds: int, warmup: int,
            clock: Callable[[], float] = time.perf_counter, progress: bool = True, scratch: str | None = None) -> dict:
    """Build the trainers once each and time their steps interleaved; the record written as step_cost.json."""
    import tempfile

    import torch

    check_same_data(params)
    first = next(iter(params.values())).train
    torch.manual_seed(first.seed)
    torch.set_num_threads(first.threads)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:  # trainers own a run folder; nothing is written there
        trainers, memory = build_trainers(params, examples, passages, index, retriever, generator, tmp)
        batches = shared_batches(next(iter(trainers.values())), warmup + rounds)
        t0 = time.perf_counter()
        res = interleave({m: stepper(t) for m, t in trainers.items()}, batches, rounds, warmup, clock=clock, progress=progress)
        wall = time.perf_counter() - t0
        device = str(next(iter(trainers.values())).model.device)
    cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else None
    return {**res, **summarize(res["step_s"]), "rounds": rounds, "warmup": warmup, "order_rule": "rotated by the round index",
            "batches": [[ex["id"] for b in step for ex in b] for step in batches],
            "shapes": {m: {k: v for k, v in p.train.to_dict().items() if k in SHAPE_KEYS} for m, p in params.items()},
            "device": device, "threads": first.threads, "wall_seconds": wall,
            "memory": {"rss_mb_after_build": memory, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                       "cuda_peak_mb": cuda_peak}}


def sources(paths: dict[str, str]) -> dict:
    """What the measurement read, jsarag.fingerprint style: each file's name and fingerprint; a
    folder's top-level files."""
    from jsarag.fingerprint import fingerprint

    out = {}
    for role, p in paths.items():
        p = Path(p)
        out[role] = ({"name": p.name, "files": {f.name: fingerprint(f) for f in sorted(p.iterdir()) if f.is_file()}}
                     if p.is_dir() else {"name": p.name, **fingerprint(p)})
    return out


def step_cost(params: dict, dataset: str, examples_path: str, passages: str, index: str, retriever: str, generator: str,
              out: str, progress: bool = True) -> dict:
    """The workflow's step_cost job: measure, then write `out` (JSON, atomically) with its provenance."""
    from jsarag.data.examples import load_examples
    from jsarag.fingerprint import check_split
    from jsarag.io import write_json

    if len(params) < 2:
        raise InputError(f"step cost of {dataset}: needs >= 2 methods to compare, got {list(params)}")
    for m, p in params.items():
        if p.dataset != dataset or p.method != m:
            raise InputError(f"--params.{m}: is the run of {p.method} on {p.dataset}, not of {m} on {dataset}")
    check_split(examples_path, passages)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    cfg = next(iter(params.values())).evaluate.step_cost
    rec = measure(params, load_examples(examples_path), passages, index, retriever, generator, cfg.rounds, cfg.warmup, progress=progress,
                  scratch=os.path.dirname(os.path.abspath(out)))
    rec = {"dataset": dataset, "methods": list(params), **rec,
           "sources": sources({"examples": examples_path, "passages": passages, "index": index, "retriever": retriever,
                               "generator": generator}),
           "params": {m: {"train": p.train.to_dict(), "retriever": p.retriever.to_dict(), "generator": p.generator.to_dict()}
                      for m, p in params.items()}}
    write_json(out, rec)
    for r in rec["ratios"]:
        log.info("%s %s/%s step time %.3f [95%% CI %.3f, %.3f] over %d interleaved rounds", dataset, r["a"], r["b"], r["ratio"],
                 r["lo"], r["hi"], r["n"])
    return rec


def read_step_cost(path: str | Path, dataset: str, methods: Sequence[str]) -> dict | None:
    """A step_cost.json's per-round times (None when absent), checked: its dataset, every method the
    report compares, equal round counts. The statistics are recomputed from the times (summarize)."""
    import json

    path = Path(path)
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("step_s"), dict):
        raise InputError(f"{path}: not a step-cost record (needs step_s: per-method step times)")
    if rec.get("dataset") != dataset:
        raise InputError(f"{path}: measures dataset {rec.get('dataset')!r}, not {dataset!r}; rerun its step_cost job")
    missing = [m for m in methods if m not in rec["step_s"]]
    if missing:
        raise InputError(f"{path}: no step times of {', '.join(missing)} (it measured {', '.join(rec['step_s'])}); rerun its step_cost job")
    try:
        return {**rec, **summarize({m: [float(x) for x in rec["step_s"][m]] for m in methods})}
    except (TypeError, ValueError):
        raise InputError(f"{path}: step_s holds a value that is not a number") from None
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
