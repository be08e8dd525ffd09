"""Training steps of benchmarks/paper_shape.py: each method through the project's Trainer (the real
loop: accumulation, clipping, every sync, logging), timed per step, per phase (jsarag.phases), with
the FLOPs of what ran and the peak memory against the memory plan.

FLOPs per step, from the sequence lengths of every forward (read from the attention masks):
- model FLOPs: the frozen generator base 4N per token (forward, and backward for the input
  gradients only), its LoRA weights 6N, the retriever towers 6N (trained); attention 12 L d s^2 per
  sequence of length s (forward 4 L d s^2, full square as in PaLM's MFU, backward twice that);
  the LM head on the kept positions (logits_to_keep) 4 V d; real tokens only;
- hardware FLOPs: the same over the padded lengths, plus the generator's recomputed forward
  (gradient checkpointing): 2N per token and 4 L d s^2 per sequence more."""
from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np
from _paper_shape_parts import memory, reset_peak

PHASES = ("query_encode", "search", "passage_fetch", "tokenize", "generator_forward", "backward", "sync", "optimizer")


class Probe:
    """Sequence lengths of every forward of the watched models, from their attention masks; kept as
    device tensors (no host sync inside the step) until `take`."""

    def __init__(self, models: dict):
        self.seen: dict[str, list] = {name: [] for name in models}
        self.handles = [m.register_forward_pre_hook(self._hook(name), with_kwargs=True) for name, m in models.items()]

    def _hook(self, name):
        def hook(module, args, kwargs):
            mask = kwargs.get("attention_mask")
            if mask is not None:
                self.seen[name].append((mask.sum(-1), mask.shape[1], kwargs.get("logits_to_keep")))
        return hook

    def take(self) -> dict[str, list]:
        out = {name: [(real.tolist(), padded, keep) for real, padded, keep in calls] for name, calls in self.seen.items()}
        for calls in self.seen.values():
            calls.clear()
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def dims(model, lora: bool = False) -> dict:
    """Non-embedding parameters (N; LoRA counted apart), layers, width and vocabulary of a transformers model."""
    c = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed" not in name and "lm_head" not in name and "lora_" not in name)
    n_lora = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name) if lora else 0
    return {"N": n, "N_lora": n_lora, "L": c.num_hidden_layers, "d": c.hidden_size, "V": c.vocab_size}


def forward_flops(m: dict, s: float) -> float:
    """Forward FLOPs of one sequence of s tokens through the non-embedding weights and attention."""
    return 2 * (m["N"] + m["N_lora"]) * s + 4 * m["L"] * m["d"] * s * s


def step_flops(calls: dict[str, list], shapes: dict[str, dict]) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) of one step's forwards (see the module docstring)."""
    model = hardware = 0.0
    for name, forwards in calls.items():
        m = shapes[name]
        for real, padded, keep in forwards:
            if name == "generator":
                head = 4 * m["V"] * m["d"] * (keep or padded) * len(real)  # fwd + input-grad bwd of the frozen LM head
                model += sum(4 * m["N"] * s + 6 * m["N_lora"] * s + 12 * m["L"] * m["d"] * s * s for s in real) + head
                hardware += len(real) * (6 * m["N"] * padded + 8 * m["N_lora"] * padded + 16 * m["L"] * m["d"] * padded ** 2) + head
            else:
                model += sum(3 * forward_flops(m, s) for s in real)
                hardware += len(real) * 3 * forward_flops(m, padded)
    return model, hardware


def timed_trainer(cls, timer, probe):
    """`cls` with a mark at the start of each step (compute_loss opens each step at grad_accum 1):
    the phases and forwards of the step before, and the wall clock after a device sync. Checkpoint
    and model saves are left out: they are the run's file writes, outside the timed steps."""

    class Timed(cls):
        marks: list

        def mark(self) -> None:
            phases = timer.collect()  # synchronizes the device first
            self.marks.append((time.perf_counter(), phases, probe.take()))

        def compute_loss(self, batch):
            self.mark()
            return super().compute_loss(batch)

        def save_checkpoint(self) -> None:
            pass

        def save_model(self) -> None:
            pass

    Timed.__name__ = f"Timed{cls.__name__}"
    return Timed


def run_method(method: str, setting: str, cfg, model, examples: list[dict], dp, warmup: int, out_dir: Path, peak: float,
               shapes_: dict) -> dict:
    """Train `warmup` + timed steps of `method`; the row of the timed steps."""
    from jsarag.phases import PhaseTimer
    from jsarag.train import TRAINERS

    device = dp.device
    reset_peak(device)
    resident = memory(device)["allocated"]
    watched = {"generator": model.generator.model, "prior": model.prior.model}  # the peft wrapper: called with logits_to_keep
    if model.posterior is not None:
        watched["posterior"] = model.posterior.model
    probe = Probe(watched)
    with PhaseTimer(device) as timer:
        trainer = timed_trainer(TRAINERS[method], timer, probe)(cfg, model, examples, out_dir, dp=dp)
        trainer.marks = []
        trainer.train(progress=False)
        trainer.mark()
    probe.close()
    mem = memory(device)
    marks, rows = trainer.marks, [r for r in trainer.log_rows if "step_time" in r]
    steps = [{"seconds": b[0] - a[0], "phases": b[1], "calls": b[2]} for a, b in zip(marks, marks[1:])][warmup:]
    rows = rows[warmup:]
    sec = np.array([s["seconds"] for s in steps])
    phases = {p: float(np.mean([s["phases"].get(p, 0.0) for s in steps])) for p in PHASES}
    extra = sorted({p for s in steps for p in s["phases"]} - set(PHASES))
    flops = np.array([step_flops(s["calls"], {n: shapes_[n] for n in s["calls"]}) for s in steps])
    gen_calls = [c for s in steps for c in s["calls"]["generator"]]
    query_calls = [c for s in steps for name in ("prior", "posterior") for c in s["calls"].get(name, [])]
    del trainer
    gc.collect()
    return {"method": method, "setting": setting, "timed_steps": len(steps), "warmup_steps": warmup,
            "step_s": float(sec.mean()), "step_s_min": float(sec.min()), "step_s_max": float(sec.max()),
            "loop_step_time_s": float(np.mean([r["step_time"] for r in rows])),
            "phases_s": phases, "unphased_s": float(sec.mean() - sum(phases.values())), "extra_phases": extra,
            "candidates": float(np.mean([r["candidates"] for r in rows])),
            "generator_sequences": float(np.mean([len(c[0]) for c in gen_calls])),
            "generator_tokens": float(np.mean([sum(c[0]) for c in gen_calls])),
            "generator_padded_length": float(np.mean([c[1] for c in gen_calls])),
            "generator_max_padded_length": int(max(c[1] for c in gen_calls)), "target_positions": int(max(c[2] or 0 for c in gen_calls)),
            "query_max_padded_length": int(max(c[1] for c in query_calls)),
            "model_flops": float(flops[:, 0].mean()), "hardware_flops": float(flops[:, 1].mean()),
            "mfu": float(flops[:, 0].mean() / sec.mean() / peak), "hfu": float(flops[:, 1].mean() / sec.mean() / peak),
            "memory": {"resident_before": resident, **mem}}


def plan_functions() -> tuple[dict, str | None]:
    """train_parts / train_phases / peak of the memory plan (its formulas, jsarag.plan_shapes, or
    jsarag.plan should it re-export them) and the plan's allocator slack; or why not, if it is missing."""
    import importlib

    found: dict = {}
    for name in ("jsarag.plan_shapes", "jsarag.plan"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        for f in ("train_parts", "train_phases", "peak", "ALLOCATOR_SLACK"):
            if f not in found and hasattr(mod, f):
                found[f] = getattr(mod, f)
    return found, None if "train_parts" in found else "jsarag.plan.train_parts is missing (the memory plan is not merged)"


def plan_for(gen_config, enc_config, row: dict, *, lora: dict, posterior: bool, buffer_bytes: int, compute_dtype: str,
             measured: tuple[int, int], paper: tuple[int, int]) -> dict:
    """The memory plan of the shape a training row measured: `measured` = (world, index rows) of this
    run, `paper` = those of one rank of the paper's 4-GPU run. Its peak (static parts + the largest
    phase) is what the allocator's peak allocation should reach; with the plan's allocator slack, the
    peak reserved. {"plan": None, "why": ...} while the plan is missing."""
    import inspect

    fns, why = plan_functions()
    if why:
        return {"plan": None, "why": why}
    kw = dict(dim=enc_config.hidden_size, n_seq=max(1, round(row["generator_sequences"])), seq_len=row["generator_max_padded_length"],
              target_len=max(1, row["target_positions"] - 1), lora=lora, posterior=posterior, compute_dtype=compute_dtype,
              gradient_checkpointing=True, search_buffer_bytes=buffer_bytes)
    if "query_len" in inspect.signature(fns["train_parts"]).parameters:
        kw.update(queries=1, query_len=row["query_max_padded_length"])
    out = {}
    for key, (world, rows) in (("plan", measured), ("plan_paper_rank", paper)):
        parts = fns["train_parts"](gen_config, enc_config, world=world, n_passages=rows, **kw)
        if "train_phases" in fns and "peak" in fns:
            total, largest = fns["peak"](parts, fns["train_phases"](parts))
        else:
            total, largest = sum(parts.values()), None
        out[key] = {"world": world, "index_rows": rows, "bytes": int(total), "largest_phase": largest,
                    "parts": {k: int(v) for k, v in parts.items()}}
    mem, plan = row["memory"], out["plan"]["bytes"]
    on_gpu = "kind" not in mem  # the CPU's figure is the host's resident set, libraries and all: not the plan's quantity
    out["peak_allocated_over_plan"] = mem["peak_allocated"] / plan if on_gpu else None
    slack = fns.get("ALLOCATOR_SLACK")
    out["peak_reserved_over_plan_with_slack"] = mem["peak_reserved"] / (plan * (1 + slack)) if on_gpu and slack else None
    return out
