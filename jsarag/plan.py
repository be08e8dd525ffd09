"""The per-GPU memory plan of a config: `python -m jsarag.plan CONFIG [--passages CORPUS=N ...]`.

For every GPU job of the config (the rules whose `resources.<rule>.gpu` > 0) it prints the bytes
per GPU by part, the phase of the job where memory peaks, and whether that peak fits an 80 GB and
a 141 GB card. The formulas are in jsarag/plan_shapes.py; `plan_config` returns the same figures
as data. Model configs come from a local model directory, the hub when online, or, offline, the
paper models' published config.json bundled in jsarag/plan_models.json.

What each job is planned as (the code after issue 16):
- train: one rank per GPU; each rank holds the bf16 generator, fp32 LoRA and query encoders with
  AdamW, its 1/W of the index, DDP's gradient buckets, and scores batch_size x candidates
  sequences of max_input_tokens + max_target_tokens (queries of models.retriever.max_length);
- evaluate, zero_shot: the whole index, retrieval in batches of 64 queries, greedy decoding of
  evaluate.batch_size prompts with the KV cache (and the top-k rescoring of evaluate);
- mis_sweep: 4 examples x 2 x max(k) candidates scored without gradients;
- retrieval_baselines: the whole index, queries encoded in batches of index.dense_batch_size;
- dense_shard: the passage encoder in bf16, batches of index.dense_batch_size, no index.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from jsarag import InputError
from jsarag import plan_shapes as ps

GB = 10**9
CARDS = {"80 GB": 80 * GB, "141 GB": 141 * GB}  # nominal capacities; a card reports a little more
# The plan's only estimates, kept here and printed with every plan:
CUDA_CONTEXT = 1 << 30  # per process: CUDA context, cuBLAS workspaces, NCCL buffers
ALLOCATOR_SLACK = 0.10  # the caching allocator's rounding and fragmentation, as a share of the peak
DEFAULT_SEARCH_BUFFER_MB = 1024  # index.search_buffer_mb when the config does not set it
GPU_RULES = ("train", "evaluate", "zero_shot", "mis_sweep", "retrieval_baselines", "dense_shard")
BUNDLED = Path(__file__).with_name("plan_models.json")
RETRIEVE_BATCH = 64  # jsarag/evaluate/predict.py retrieve(): Encoder.encode batch
MIS_BATCH = 4  # jsarag/evaluate/mis_sweep.py: examples per model.score call

LABELS = {
    "generator.weights": "generator weights (bf16)", "lora.weights": "LoRA weights (fp32)", "lora.grads": "LoRA gradients (fp32)",
    "lora.adamw": "LoRA AdamW moments (2 x fp32)", "prior.weights": "prior encoder weights (fp32)",
    "prior.grads": "prior gradients (fp32, all but the pooler)", "prior.adamw": "prior AdamW moments (2 x fp32)",
    "posterior.weights": "posterior encoder weights (fp32)", "posterior.grads": "posterior gradients (fp32, all but the pooler)",
    "posterior.adamw": "posterior AdamW moments (2 x fp32)", "encoder.weights": "passage encoder weights",
    "index.shard": "index shard (fp16 rows of this rank)", "index.full": "index (all fp16 rows)",
    "ddp.buckets": "DDP gradient buckets (fp32)", "activations.retrievers": "query encoders' activations (fp32)",
    "activations.checkpoints": "checkpointed layer inputs + final norm",
    "activations.layer_recompute": "one layer recomputed + its backward",
    "activations.layers": "every layer's saved tensors", "activations.layer_backward": "one layer's backward in flight",
    "activations.logits": "log-softmax of the last T positions", "search.buffer": "search score buffer",
    "optimizer.step": "AdamW step temporaries", "activations.query_encoding": "query encoding (no grad)",
    "activations.kv_cache": "KV cache of a decoding batch", "activations.prefill": "one layer of the prefill (no grad)",
    "activations.scoring_layers": "one generator layer while scoring (no grad)", "activations.scoring_logits": "scoring logits (no grad)",
    "activations.passage_encoding": "passage encoding (no grad)", "cuda.context": "CUDA context (estimate)",
    "allocator.slack": f"allocator slack, {ALLOCATOR_SLACK:.0%} (estimate)",
}


# -- model configs -------------------------------------------------------------------------------
def bundled_configs() -> dict:
    return {k: v for k, v in json.loads(BUNDLED.read_text(encoding="utf-8")).items() if not k.startswith("_")}


def model_config(source: str, where: str):
    """(transformers config, where it came from) of a model source (jsarag.model.sources)."""
    from transformers import AutoConfig

    from jsarag.model.sources import resolve

    path, kw = resolve(source)
    if os.path.isdir(path):
        try:
            return AutoConfig.from_pretrained(path, **kw), f"{path} ({kw.get('gguf_file', 'config.json')})"
        except (OSError, ValueError) as e:
            raise InputError(f"{where}: cannot read the model config in {path}: {e}") from None
    bundled = bundled_configs().get(path)
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        try:
            return AutoConfig.from_pretrained(path), f"the hub ({path})"
        except OSError as e:
            if bundled is None:
                raise InputError(f"{where}: {source!r}: the hub failed ({e}) and the plan bundles no config for it") from None
    if bundled is None:
        raise InputError(f"{where}: {source!r} is not a local model directory, the hub is offline (HF_HUB_OFFLINE=1), and "
                         f"{BUNDLED.name} bundles only {', '.join(bundled_configs())}")
    fields = dict(bundled["config"])
    return AutoConfig.for_model(fields.pop("model_type"), **fields), f"jsarag/{BUNDLED.name}: the published config.json (sources there)"


# -- the jobs of a config ------------------------------------------------------------------------
def corpus_rows(cfg: dict, passages: dict[str, int] | None) -> dict[str, int | None]:
    """Passages per corpus: corpora.<c>.expect_passages, else the caller's count, else None."""
    passages = passages or {}
    unknown = sorted(set(passages) - set(cfg["corpora"]))
    if unknown:
        raise InputError(f"--passages: no corpus {unknown[0]!r} in the config (corpora: {', '.join(cfg['corpora'])})")
    out = {}
    for name, c in cfg["corpora"].items():
        pinned = c.get("expect_passages")
        if pinned is not None and name in passages and passages[name] != pinned:
            raise InputError(f"--passages {name}={passages[name]}: corpora.{name}.expect_passages pins {pinned}")
        out[name] = pinned if pinned is not None else passages.get(name)
    return out


def _corpora(cfg: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d, spec in cfg["datasets"].items():
        out.setdefault(spec["corpus"], []).append(d)
    return out


def _search_buffer(cfg: dict) -> tuple[int, str]:
    mb = (cfg.get("index") or {}).get("search_buffer_mb")
    if mb is None:
        return DEFAULT_SEARCH_BUFFER_MB << 20, f"index.search_buffer_mb not set: {DEFAULT_SEARCH_BUFFER_MB} MiB"
    if isinstance(mb, bool) or not isinstance(mb, int | float) or mb <= 0:
        raise InputError(f"index.search_buffer_mb: expected a positive number of MiB, got {mb!r}")
    return int(mb * (1 << 20)), f"index.search_buffer_mb = {mb}"


def _candidates(method: str, tc) -> int:
    """Generator sequences per micro-batch: batch x (k, or up to 2k for the union of two top-k sets,
    plus the cached MIS state under train.jsa.cache)."""
    per = tc.k if method == "rag" else 2 * tc.k
    per += 1 if method == "jsa" and getattr(tc, "cache", False) else 0
    return tc.batch_size * per


def _train(models, tc, method: str, world: int, rows: int, buffer: int, q_len: int) -> tuple[dict, dict]:
    if not tc.lora:
        raise InputError(f"train.{method}.lora: null trains every generator weight; the plan covers LoRA training only")
    gen_cfg, enc_cfg = models
    n_seq = rows if tc.exact else _candidates(method, tc)
    parts = ps.train_parts(gen_cfg, enc_cfg, world=world, n_passages=rows, dim=enc_cfg.hidden_size, n_seq=n_seq,
                           seq_len=tc.max_input_tokens + tc.max_target_tokens, target_len=tc.max_target_tokens, lora=dict(tc.lora),
                           posterior=method != "rag", gradient_checkpointing=tc.gradient_checkpointing, search_buffer_bytes=buffer,
                           train_prior=tc.train_prior, queries=tc.batch_size, query_len=q_len)
    return parts, ps.train_phases(parts)


def _inference(rule: str, models, tc, ev, idx, posterior: bool, rows: int, buffer: int, q_len: int) -> tuple[dict, dict]:
    """Parts and phases of the jobs that do not train (weights only; activations without gradients)."""
    gen_cfg, enc_cfg = models
    enc = ps.bert(enc_cfg)
    if rule == "dense_shard":  # passages encoded in the compute dtype (bf16 on a GPU), to the host
        parts = {"encoder.weights": enc.params * 2,
                 "activations.passage_encoding": ps.bert_inference(enc, idx.dense_batch_size, q_len, 2)}
        return parts, {"encode": parts["activations.passage_encoding"]}
    parts = {"prior.weights": enc.params * ps.MASTER}
    if posterior:
        parts["posterior.weights"] = enc.params * ps.MASTER
    parts["index.full"] = rows * enc_cfg.hidden_size * ps.INDEX_BYTES
    parts["search.buffer"] = buffer
    if rule == "retrieval_baselines":  # all queries encoded first (index.dense_batch_size), then searched
        parts["activations.query_encoding"] = ps.bert_inference(enc, idx.dense_batch_size, q_len, ps.MASTER)
        return parts, {"encode": parts["activations.query_encoding"], "search": buffer}
    dec = ps.decoder(gen_cfg)
    n_lora, _ = ps.lora_params(dec, dict(tc.lora))
    parts = {"generator.weights": dec.params * 2, "lora.weights": n_lora * ps.MASTER, **parts}
    L_in, T = tc.max_input_tokens, tc.max_target_tokens
    if rule == "mis_sweep":  # the candidates of the largest k, scored once per batch of examples
        n, L = MIS_BATCH * 2 * max(ev.mis_sweep.k), L_in + T
        parts["activations.query_encoding"] = ps.bert_inference(enc, MIS_BATCH, q_len, ps.MASTER)
        parts["activations.scoring_layers"] = ps.decoder_inference(dec, n, L, 2)
        parts["activations.scoring_logits"] = ps.logits_inference(dec, n, T, 2) + n * L * dec.hidden * 2
        return parts, {"search": parts["activations.query_encoding"] + buffer,
                       "layers": parts["activations.scoring_layers"], "logits": parts["activations.scoring_logits"]}
    B, new = ev.batch_size, ev.max_new_tokens  # greedy decoding with the KV cache, batches of evaluate.batch_size
    parts["activations.query_encoding"] = ps.bert_inference(enc, RETRIEVE_BATCH, q_len, ps.MASTER)
    parts["activations.kv_cache"] = ps.kv_cache(dec, B, L_in + new, 2)
    parts["activations.prefill"] = ps.decoder_inference(dec, B, L_in, 2)
    phases = {"retrieve": parts["activations.query_encoding"] + buffer,
              "decode": parts["activations.kv_cache"] + parts["activations.prefill"]}
    if rule == "evaluate" and "topk" in ev.decoding:  # each top-k answer rescored by log p(a|x,h)
        T2 = min(new + 1, T)
        parts["activations.scoring_layers"] = ps.decoder_inference(dec, B, L_in + T2, 2)
        parts["activations.scoring_logits"] = ps.logits_inference(dec, B, T2, 2)
        phases["rescore"] = max(parts["activations.scoring_layers"], parts["activations.scoring_logits"])
    return parts, phases


def plan_config(cfg: dict, passages: dict[str, int] | None = None) -> list[dict]:
    """One entry per GPU job of `cfg` (rule x method x corpus): parts and phases in bytes per GPU,
    the peak, and the verdict for each card (None where the index rows are unknown)."""
    from jsarag.config import EvaluateConfig, IndexConfig, RetrieverConfig, train_section
    from jsarag.resources import ResourcesConfig

    res = ResourcesConfig.from_dict(cfg.get("resources"))
    jobs = [(rule, getattr(res, rule).gpu) for rule in GPU_RULES if getattr(res, rule).gpu > 0]
    if not jobs:
        return []
    rows_of, corpora = corpus_rows(cfg, passages), _corpora(cfg)
    models = (model_config(cfg["models"]["generator"]["source"], "models.generator.source")[0],
              model_config(cfg["models"]["retriever"]["source"], "models.retriever.source")[0])
    q_len = min(RetrieverConfig.from_dict(cfg["models"]["retriever"], "models.retriever").max_length,
                models[1].max_position_embeddings)
    ev = EvaluateConfig.from_dict(cfg.get("evaluate"), "evaluate")
    idx = IndexConfig.from_dict({k: v for k, v in (cfg.get("index") or {}).items() if k != "search_buffer_mb"}, "index")
    buffer, buffer_note = _search_buffer(cfg)
    seed = cfg["seeds"][0]
    entries = []
    for rule, gpus in jobs:
        methods = {"train": cfg["methods"], "evaluate": cfg["methods"], "mis_sweep": [m for m in cfg["methods"] if m == "jsa"],
                   "zero_shot": ["rag"]}.get(rule, [None])
        for method in methods:
            tc = train_section(cfg, method or "rag", seed)
            for corpus, datasets in corpora.items():
                rows = rows_of[corpus]
                known = rows is not None or rule == "dense_shard"
                if rule == "train":
                    parts, phases = _train(models, tc, method, gpus, rows or 0, buffer, q_len)
                else:
                    posterior = rule in ("zero_shot", "mis_sweep") or method in ("vrag", "jsa")
                    parts, phases = _inference(rule, models, tc, ev, idx, posterior, rows or 0, buffer, q_len)
                entries.append(_entry(rule, method, corpus, datasets, gpus, rows, known, parts, phases, buffer_note, tc))
    return entries


def _entry(rule, method, corpus, datasets, gpus, rows, known, parts, phases, buffer_note, tc) -> dict:
    top, phase = ps.peak(parts, phases)
    slack = int(top * ALLOCATOR_SLACK)
    total = top + slack + CUDA_CONTEXT
    notes = [f"search buffer: {buffer_note}"] if "search.buffer" in parts else []
    if rule == "train" and tc.index_refresh:
        notes.append(f"train.common.index_refresh = {tc.index_refresh}: the re-encode of the index is not in the plan")
    if rule != "train" and gpus > 1:
        notes.append(f"resources.{rule}.gpu = {gpus}: one process, planned on one GPU")
    return {"rule": rule, "method": method, "corpus": corpus, "datasets": datasets, "gpus": gpus, "rows": rows,
            "parts": {**parts, "allocator.slack": slack, "cuda.context": CUDA_CONTEXT}, "phases": phases, "peak_phase": phase,
            "total": total if known else None, "total_without_index": None if known else total,
            "fits": {card: (total <= cap if known else None) for card, cap in CARDS.items()}, "notes": notes}


# -- printing ------------------------------------------------------------------------------------
def _gb(x: int | None) -> str:
    return "?" if x is None else f"{x / GB:.2f}"


def format_plan(entries: list[dict], origins: list[str]) -> str:
    if not entries:
        return "no GPU jobs: no rule has resources.<rule>.gpu > 0\n"
    out = ["Memory plan per GPU, GB (10^9 bytes). Model configs:", *(f"  {o}" for o in origins),
           f"Estimates: CUDA context {CUDA_CONTEXT / GB:.2f} GB per process; allocator slack {ALLOCATOR_SLACK:.0%} of the peak.",
           "Peak = static parts + the largest phase (activations, gradients and temporaries of one phase are alive together).", ""]
    for rule in GPU_RULES:
        group = [e for e in entries if e["rule"] == rule]
        if not group:
            continue
        gpus = group[0]["gpus"]
        out.append(f"== {rule}: resources.{rule}.gpu = {gpus}" + (f" (torchrun, {gpus} ranks, the index sharded by rank)"
                                                                   if rule == "train" and gpus > 1 else ""))
        cols = list(dict.fromkeys(e["method"] or "-" for e in group))
        first = [e for e in group if e["corpus"] == group[0]["corpus"]]
        w = max(9, *(len(c) + 2 for c in cols), *(len(e["peak_phase"]) + 2 for e in group))
        out.append(f"  {'part':58s}" + "".join(f"{c:>{w}s}" for c in cols))
        order = list(LABELS)
        for part in sorted({p for e in first for p in e["parts"]}, key=lambda p: order.index(p) if p in order else len(order)):
            if not part.startswith("index."):
                out.append(f"  {LABELS.get(part, part):58s}" + "".join(
                    f"{_gb(e['parts'][part]) if part in e['parts'] else '-':>{w}s}" for e in first))
        for corpus in dict.fromkeys(e["corpus"] for e in group):
            es = [e for e in group if e["corpus"] == corpus]
            rows = es[0]["rows"]
            if rule == "dense_shard":
                head = f"[{corpus}]"
            elif rows is None:
                head = f"[{corpus}: rows unknown, pass --passages {corpus}=N]"
            else:
                head = f"[{corpus}: {rows:,} passages" + (f", {-(-rows // gpus):,} per rank]" if rule == "train" else "]")
            out.append(f"  {head} datasets {', '.join(es[0]['datasets'])}")
            for part in (p for p in es[0]["parts"] if p.startswith("index.")):
                out.append(f"    {LABELS[part]:56s}" + "".join(f"{_gb(e['parts'][part] if rows is not None else None):>{w}s}"
                                                             for e in es))
            out.append(f"    {'peak phase':56s}" + "".join(f"{e['peak_phase']:>{w}s}" for e in es))
            if rows is not None or rule == "dense_shard":
                out.append(f"    {'total per GPU':56s}" + "".join(f"{_gb(e['total']):>{w}s}" for e in es))
                for card in CARDS:
                    out.append(f"    {card + ' card':56s}" + "".join(f"{'fits' if e['fits'][card] else 'NO':>{w}s}" for e in es))
            else:
                out.append(f"    {'total per GPU without the index':56s}" + "".join(f"{_gb(e['total_without_index']):>{w}s}" for e in es))
                out.append(f"    {'80 GB / 141 GB card':56s}" + "".join(f"{'unknown':>{w}s}" for e in es))
        for note in dict.fromkeys(n for e in group for n in e["notes"]):
            out.append(f"  note: {note}")
        out.append("")
    return "\n".join(out)


def _origins(cfg: dict) -> list[str]:
    """Where each model config came from, and its exact parameter counts."""
    (gen_cfg, gen_from), (enc_cfg, enc_from) = (model_config(cfg["models"][r]["source"], f"models.{r}.source")
                                                for r in ("generator", "retriever"))
    dec, enc = ps.decoder(gen_cfg), ps.bert(enc_cfg)
    lora = dict(cfg["train"]["common"].get("lora") or {})
    n_lora = f", LoRA {ps.lora_params(dec, lora)[0]:,} (r = {lora.get('r', 8)})" if lora.get("target_modules") else ""
    return [f"generator {cfg['models']['generator']['source']}: {dec.params:,} parameters{n_lora}; from {gen_from}",
            f"retriever {cfg['models']['retriever']['source']}: {enc.params:,} parameters, {enc.params - enc.frozen:,} trained "
            f"(not the pooler); from {enc_from}"]


def _passages_arg(text: str) -> tuple[str, int]:
    name, sep, n = text.partition("=")
    if not sep or not name or not n.isdigit() or int(n) <= 0:
        raise InputError(f"--passages {text!r}: expected CORPUS=N with N a positive integer")
    return name, int(n)


def main(argv: list[str] | None = None) -> None:
    from jsarag.config import load_config

    p = argparse.ArgumentParser(prog="python -m jsarag.plan", description=__doc__.splitlines()[0])
    p.add_argument("config", help="a workflow config (configs/paper.yaml)")
    p.add_argument("--passages", action="append", default=[], metavar="CORPUS=N",
                   help="passage count of a corpus without corpora.<c>.expect_passages")
    p.add_argument("--json", action="store_true", help="print the entries as JSON")
    a = p.parse_args(argv)
    passages = dict(_passages_arg(x) for x in a.passages)
    cfg = load_config(a.config)
    entries = plan_config(cfg, passages)
    if a.json:
        print(json.dumps(entries, indent=1))
        return
    origins = _origins(cfg) if entries else []
    print(format_plan(entries, origins), end="")


if __name__ == "__main__":
    from jsarag.cli import run_cli

    run_cli(main)
