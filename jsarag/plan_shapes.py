"""The formulas of the per-GPU memory plan (`python -m jsarag.plan`, jsarag/plan.py): bytes per part
of one job, from transformers configs and shapes.

Parameter counts are exact: the models are built from their configs on the meta device and
counted; LoRA counts r x (in + out) for each targeted linear. Activations follow what autograd
keeps in this code's forward pass (read from `saved_tensors_hooks` on transformers' Mistral and
BERT layers, sdpa attention, peft LoRA):

- a Llama-style decoder layer keeps its fp32 RMSNorm inputs, the LoRA inputs, q / k / v (k and v
  repeated to all heads when a padding mask is present) and the attention output with its
  logsumexp, the float padding mask, and gate, silu(gate), up and their product;
- with non-reentrant gradient checkpointing only each layer's input is kept, and one layer is
  recomputed at a time in backward;
- the generator keeps the log-softmax of the last T positions in fp32 (`logits_to_keep=T+1`,
  `log_softmax(logits.float())`, jsarag/model/generator.py); its backward holds three fp32
  [n, T, V] tensors at once;
- a BERT layer keeps its input, q / k / v / output, both LayerNorm inputs, the LayerNorm output
  and the GELU input and output.

A step's peak is the static part plus the largest phase (`peak`): the generator's activations
and the optimizer's temporaries are never alive together. tests/test_plan.py checks these figures
against peaks measured on the CPU (compute dtype fp32). The bf16 figure is the same formulas at 2
bytes: the generator under bf16 autocast with its fp32 LoRA weights and no per-layer fp32 copy of
the LoRA inputs (issue 16), the retrievers in fp32.
"""
from __future__ import annotations

from dataclasses import dataclass

from jsarag import InputError

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
MASTER = 4  # fp32 bytes: trained weights and their gradients
ADAMW = 8  # two fp32 moments per trained parameter
INDEX_BYTES = 2  # the dense index holds fp16 rows


def dtype_bytes(name: str) -> int:
    if name not in DTYPE_BYTES:
        raise InputError(f"compute dtype {name!r}: must be one of {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


# -- models: exact counts on the meta device -----------------------------------------------------
@dataclass
class Decoder:
    """A Llama-style decoder (Mistral, Llama, Qwen2): its shapes and exact parameter count."""
    params: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    linears: dict  # module name -> (in_features, out_features)


@dataclass
class BertEncoder:
    params: int
    frozen: int  # the pooler: built by AutoModel, not trained
    largest: int  # numel of the largest trained tensor
    hidden: int
    layers: int
    heads: int
    intermediate: int


def _meta_model(config, causal: bool):
    import torch
    import transformers

    cls = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    with torch.device("meta"):
        return cls.from_config(config)


def decoder(config) -> Decoder:
    from torch import nn

    if getattr(config, "is_encoder_decoder", False) or not hasattr(config, "num_key_value_heads"):
        raise InputError(f"generator model_type {config.model_type!r}: the memory plan covers Llama-style decoders "
                         "(q/k/v/o and gate/up/down projections)")
    model = _meta_model(config, causal=True)
    linears = {n: (m.in_features, m.out_features) for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return Decoder(sum(p.numel() for p in model.parameters()), config.hidden_size, config.num_hidden_layers, heads,
                   config.num_key_value_heads or heads, head_dim, config.intermediate_size, config.vocab_size, linears)


def bert(config) -> BertEncoder:
    if config.model_type not in ("bert", "roberta", "xlm-roberta"):
        raise InputError(f"retriever model_type {config.model_type!r}: the memory plan covers BERT-style encoders")
    model = _meta_model(config, causal=False)
    named = dict(model.named_parameters())
    frozen = sum(p.numel() for n, p in named.items() if n.startswith("pooler."))
    largest = max(p.numel() for n, p in named.items() if not n.startswith("pooler."))
    return BertEncoder(sum(p.numel() for p in named.values()), frozen, largest, config.hidden_size, config.num_hidden_layers,
                       config.num_attention_heads, config.intermediate_size)


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    return next((int(p) for p in parts if p.isdigit()), None)


def lora_targets(dec: Decoder, lora: dict) -> dict[int, dict[str, tuple[int, int]]]:
    """Layer -> {module suffix: (in, out)} of the linears LoRA wraps, matched as peft does (the
    name, or its last component, is a target; `layers` restricts the layer indices)."""
    targets = list(lora.get("target_modules") or [])
    if not targets:
        raise InputError("train.common.lora.target_modules: the plan needs the target modules named")
    layers = set(lora["layers"]) if lora.get("layers") else None
    out: dict[int, dict[str, tuple[int, int]]] = {}
    for name, shape in dec.linears.items():
        suffix = name.rsplit(".", 1)[-1]
        if name in targets or suffix in targets:
            i = _layer_index(name)
            if i is not None and (layers is None or i in layers):
                out.setdefault(i, {})[suffix] = shape
    if not out:
        raise InputError(f"train.common.lora.target_modules: {targets} match no linear layer of the generator")
    return out


def lora_params(dec: Decoder, lora: dict) -> tuple[int, int]:
    """(LoRA parameters, numel of the largest LoRA matrix)."""
    r = int(lora.get("r", 8))
    shapes = [s for mods in lora_targets(dec, lora).values() for s in mods.values()]
    return sum(r * (i + o) for i, o in shapes), max(r * max(i, o) for i, o in shapes)


# -- activations ---------------------------------------------------------------------------------
def decoder_layer_saved(dec: Decoder, mods: dict, r: int, n: int, L: int, b: int, *, first: bool, checkpointed: bool,
                        mask: bool = True) -> int:
    """Bytes one decoder layer keeps for backward over n sequences of L tokens (compute dtype of
    b bytes; `mods` are its LoRA-wrapped linears). The layer input (a checkpoint under
    gradient checkpointing) is not included; an fp32 layer keeps it as its RMSNorm input."""
    N, h, F = n * L, dec.hidden, dec.intermediate
    hq = dec.heads * dec.head_dim
    # repeat_kv copies k and v to every head under a padding mask (a view when there is one kv head)
    hkv = hq if mask and 1 < dec.kv_heads < dec.heads else dec.kv_heads * dec.head_dim
    s = 0
    if not first:  # the first layer's input needs no gradient, so its RMSNorm keeps nothing
        s += N * 4 + (N * h * 4 if b != 4 or not checkpointed else 0)  # rsqrt; fp32 input (the checkpoint itself in fp32)
    s += N * h * b if mods.keys() & {"q_proj", "k_proj", "v_proj"} else 0  # normed input, kept by LoRA A
    s += N * (hq + 2 * hkv + hq) * b + N * dec.heads * 4  # q, k, v, attention output (= o_proj's input); logsumexp
    s += n * L * L * b if mask else 0  # the padding mask as a float tensor
    s += N * h * 4 + N * 4  # post-attention RMSNorm: fp32 input and rsqrt
    s += N * h * b if mods.keys() & {"gate_proj", "up_proj"} else 0
    s += 3 * N * F * b + (N * F * b if "down_proj" in mods else 0)  # gate, silu(gate), up; their product
    s += N * r * b * len(mods)  # each LoRA A output, kept by LoRA B
    return s


def decoder_backward_transient(dec: Decoder, n: int, L: int, b: int) -> int:
    """Gradients in flight inside one layer's backward: two [N, F] (the MLP) and two [N, h]."""
    N = n * L
    return 2 * N * dec.intermediate * b + 2 * N * dec.hidden * b


def logits_bytes(dec: Decoder, n: int, T: int, b: int) -> int:
    """The scoring head: forward holds the [n, T+1, V] logits, their fp32 copy and log-softmax;
    backward holds the kept log-softmax, the gathered gradient and the input gradient (fp32)."""
    V = dec.vocab
    return max(n * (T + 1) * V * b + 2 * n * T * V * 4, 3 * n * T * V * 4)


def generator_activations(dec: Decoder, lora: dict, n: int, L: int, T: int, b: int, checkpointing: bool) -> dict[str, int]:
    """Activation parts of one generator forward + backward over n sequences of L tokens."""
    targets, r = lora_targets(dec, lora), int(lora.get("r", 8))
    N, h = n * L, dec.hidden
    shared = N * h * 4 + N * 4 + 2 * N * dec.head_dim * b  # final RMSNorm input and rsqrt, rope cos/sin
    saved = [decoder_layer_saved(dec, targets.get(i, {}), r, n, L, b, first=i == 0, checkpointed=checkpointing)
             for i in range(dec.layers)]
    transient = decoder_backward_transient(dec, n, L, b)
    if checkpointing:
        # the checkpoints keep each layer's arguments: its input and the bool padding mask
        return {"activations.checkpoints": dec.layers * N * h * b + n * L * L + shared,
                "activations.layer_recompute": max(saved) + transient,
                "activations.logits": logits_bytes(dec, n, T, b)}
    return {"activations.layers": sum(saved) + shared, "activations.layer_backward": transient,
            "activations.logits": logits_bytes(dec, n, T, b)}


def bert_activations(enc: BertEncoder, queries: int, Lq: int) -> int:
    """What one fp32 BERT query encoder keeps for backward (dropout off: eval mode)."""
    N, h, F = queries * Lq, enc.hidden, enc.intermediate
    mask = queries * Lq * Lq * 4 if queries > 1 else 0  # padding only with several queries
    per_layer = N * (8 * h * 4 + 2 * F * 4 + enc.heads * 4 + 16) + mask
    return N * (h * 4 + 8 + 24) + enc.layers * per_layer + N * h * 4  # embeddings LayerNorm + ids; the last hidden state


def decoder_inference(dec: Decoder, n: int, L: int, b: int) -> int:
    """Working set of one decoder layer without gradients (the largest moment of a forward): the
    embeddings and the layer input stay referenced by the model's forward, the layer holds its
    normed input (and, in the MLP, the residual)."""
    N, h, F = n * L, dec.hidden, dec.intermediate
    hq, hkv = dec.heads * dec.head_dim, dec.kv_heads * dec.head_dim
    attn = N * (3 * h + hq + 2 * hkv + 2 * hq + hq) * b + n * L * L * (1 + b)  # q, k, v, k and v repeated, output; bool and float mask
    mlp = N * (4 * h + 4 * F) * b  # silu(gate), and up_proj's base output, LoRA output and their sum
    return max(attn, mlp)


def logits_inference(dec: Decoder, n: int, T: int, b: int) -> int:
    """Scoring without gradients: the [n, T+1, V] logits, their fp32 copy and the log-softmax."""
    return n * (T + 1) * dec.vocab * b + 2 * n * T * dec.vocab * 4


def bert_inference(enc: BertEncoder, batch: int, L: int, b: int) -> int:
    """Working set of one BERT layer without gradients: the embeddings (past the first layer) and
    the layer input, then q / k / v / output and the padding mask, or the attention block's output
    and the GELU's input and output."""
    N, h = batch * L, enc.hidden
    outer = (2 if enc.layers > 1 else 1) * N * h * b
    attn = 4 * N * h * b + (batch * L * L * (1 + b) if batch > 1 else 0)
    return outer + max(attn, N * h * b + 2 * N * enc.intermediate * b)


def kv_cache(dec: Decoder, batch: int, length: int, b: int) -> int:
    """Keys and values of every layer, plus one layer's copy while the cache grows."""
    per_layer = 2 * batch * length * dec.kv_heads * dec.head_dim * b
    return (dec.layers + 1) * per_layer


# -- a training step -----------------------------------------------------------------------------
def train_parts(gen_config, enc_config, *, world: int, n_passages: int, dim: int, n_seq: int, seq_len: int,
                target_len: int, lora: dict, posterior: bool, compute_dtype: str = "bfloat16", gradient_checkpointing: bool = True,
                search_buffer_bytes: int = 1 << 30, train_prior: bool = True, queries: int = 1, query_len: int | None = None,
                foreach: bool | None = None) -> dict[str, int]:
    """Bytes per part on one rank of a training job. The generator's base weights are in
    `compute_dtype`; LoRA and the retrievers train in fp32 with AdamW. `queries` x `query_len`:
    what each query encoder reads per micro-batch (default: its max_position_embeddings).
    `foreach`: AdamW's multi-tensor path (the default on a GPU; None: on unless fp32)."""
    b = dtype_bytes(compute_dtype)
    if world < 1 or n_seq < 1 or seq_len < 1 or not 0 < target_len <= seq_len:
        raise InputError(f"shapes: world {world}, n_seq {n_seq}, seq_len {seq_len}, target_len {target_len}")
    dec, enc = decoder(gen_config), bert(enc_config)
    n_lora, lora_largest = lora_params(dec, lora)
    parts = {"generator.weights": dec.params * b, "lora.weights": n_lora * MASTER, "lora.grads": n_lora * MASTER,
             "lora.adamw": n_lora * ADAMW}
    trained = enc.params - enc.frozen
    towers = [("prior", train_prior)] + ([("posterior", True)] if posterior else [])
    groups = [n_lora * MASTER, 0]
    for name, trains in towers:
        parts[f"{name}.weights"] = enc.params * MASTER
        if trains:
            parts[f"{name}.grads"] = trained * MASTER
            parts[f"{name}.adamw"] = trained * ADAMW
            groups[1] += trained * MASTER
    rows = -(-n_passages // world)
    parts["index.shard"] = rows * dim * INDEX_BYTES
    if world > 1:  # DDP keeps a bucket copy of every gradient (gradient_as_bucket_view=False, its default)
        parts["ddp.buckets"] = sum(groups)
    Lq = query_len or enc_config.max_position_embeddings
    parts["activations.retrievers"] = bert_activations(enc, queries, Lq) * len(towers)
    parts.update(generator_activations(dec, lora, n_seq, seq_len, target_len, b, gradient_checkpointing))
    parts["search.buffer"] = int(search_buffer_bytes)
    use_foreach = compute_dtype != "float32" if foreach is None else foreach
    largest = max(lora_largest, enc.largest)
    parts["optimizer.step"] = max(groups) if use_foreach else 2 * largest * MASTER  # sqrt(v) (and its quotient)
    return parts


STATIC = ("generator.weights", "lora.weights", "lora.adamw", "prior.weights", "prior.adamw", "posterior.weights",
          "posterior.adamw", "index.shard", "index.full", "encoder.weights", "ddp.buckets")


def train_phases(parts: dict[str, int]) -> dict[str, int]:
    """The transient bytes of each phase of a training step (on top of the static parts)."""
    g = parts.get
    grads = sum(v for k, v in parts.items() if k.endswith(".grads"))
    if "activations.layer_recompute" in parts:  # checkpointing: the logits' backward, then one layer at a time
        gen = g("activations.checkpoints", 0) + max(g("activations.layer_recompute", 0), g("activations.logits", 0))
    else:
        gen = g("activations.layers", 0) + max(g("activations.layer_backward", 0), g("activations.logits", 0))
    retr = g("activations.retrievers", 0)
    return {"search": retr + g("search.buffer", 0),
            "generator": retr + gen + g("lora.grads", 0),  # its backward; the retrievers' backward runs after it
            "retrievers": retr + grads,  # their backward
            "optimizer": grads + g("optimizer.step", 0)}


def static_bytes(parts: dict[str, int]) -> int:
    return sum(v for k, v in parts.items() if k in STATIC)


def peak(parts: dict[str, int], phases: dict[str, int]) -> tuple[int, str]:
    """(static + the largest phase, that phase's name)."""
    name = max(phases, key=phases.get)
    return static_bytes(parts) + phases[name], name
