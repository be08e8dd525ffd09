"""Where models come from: an installed package, a local directory, or a hub id.

`export` turns any of these into a plain transformers directory once (the GGUF generator is
dequantized here; `python -m jsarag.data export-model`), so every training and evaluation job
loads it in about a second.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from jsarag import InputError


def _package_dir(name: str) -> Path:
    # find_spec does not execute the package: both asset packages fail on import.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"model package {name!r} is not installed (see README: install with --no-deps)")
    return Path(list(spec.submodule_search_locations)[0])


def resolve(source: str) -> tuple[str, dict]:
    """Map a model source to (path_or_id, extra from_pretrained kwargs).

    - "package:PKG/SUBDIR"      a directory inside an installed package
    - "gguf:PKG/FILE.gguf"      a GGUF file inside an installed package (needs the gguf package)
    - a local directory
    - anything else: a hub id (fails with a clear message offline)
    """
    if source.startswith("package:"):
        pkg, _, sub = source[len("package:"):].partition("/")
        path = _package_dir(pkg) / sub
        if not path.exists():
            raise InputError(f"{path} not found in package {pkg!r}")
        return str(path), {}
    if source.startswith("gguf:"):
        pkg, _, fname = source[len("gguf:"):].partition("/")
        d = _package_dir(pkg)
        if not (d / fname).exists():
            raise InputError(f"{d / fname} not found in package {pkg!r}")
        return str(d), {"gguf_file": fname}
    if os.path.isdir(source):
        return source, {}
    return source, {}


def _status(e) -> int | None:
    return getattr(getattr(e, "response", None), "status_code", None)


def _refusal(err: BaseException):
    """The hub's authorization refusal (HTTP 401/403, a GatedRepoError among them) in the chain of `err`, or
    None: transformers wraps huggingface_hub's errors in an OSError raised from them."""
    try:
        from huggingface_hub.errors import HfHubHTTPError
    except ImportError:
        return None
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, HfHubHTTPError) and _status(e) in (401, 403):  # GatedRepoError: 401 or 403
            return e
        e = e.__cause__ or e.__context__
    return None


def _access_error(source: str, refusal) -> InputError:
    from huggingface_hub.errors import GatedRepoError

    page = f"https://huggingface.co/{source}"
    what = ("it is a gated model, and the hub refused access" if isinstance(refusal, GatedRepoError)
            else "the hub refused access (a gated or private model, or no such id)")
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        token = ("HF_TOKEN is set, so its account has no access yet: accept the licence with that account "
                 "(a fine-grained token also needs read access to public gated repositories)")
    else:
        token = ("HF_TOKEN is not set: after accepting the licence, set HF_TOKEN to an access token of that account "
                 "(https://huggingface.co/settings/tokens), or log in with `hf auth login`")
    said = refusal.server_message or str(refusal).strip().splitlines()[-1]
    return InputError(f"cannot load model {source!r}: {what} (HTTP {_status(refusal)}). "
                      f"Accept its licence at {page} while logged in. {token}. The hub said: {said}")


def hub_error(source: str, err: Exception) -> InputError:
    refusal = _refusal(err)
    if refusal is not None:
        return _access_error(source, refusal)
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    hint = " (HF_HUB_OFFLINE=1 is set)" if offline else " (is the model hub reachable?)"
    return InputError(f"cannot load model {source!r}: not a local directory or package, and the hub failed{hint}: {err}")


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    path, kw = resolve(source)
    try:
        tok = AutoTokenizer.from_pretrained(path, **kw)
    except OSError as e:
        raise hub_error(source, e) from None
    return tok


def load_model(source: str, kind: str = "encoder", dtype=None, device: str = "cpu"):
    """kind: encoder (AutoModel), causal (AutoModelForCausalLM), seq2seq (AutoModelForSeq2SeqLM).
    Loaded directly in `dtype` (fp32 by default) and, on a GPU, straight into its memory (no fp32
    copy on the host first)."""
    import torch
    import transformers as tf

    cls = {"encoder": tf.AutoModel, "causal": tf.AutoModelForCausalLM, "seq2seq": tf.AutoModelForSeq2SeqLM}[kind]
    path, kw = resolve(source)
    if device != "cpu" and "gguf_file" not in kw:
        kw["device_map"] = {"": device}
    try:
        model = cls.from_pretrained(path, dtype=dtype or torch.float32, **kw)
    except OSError as e:
        raise hub_error(source, e) from None
    if "gguf_file" in kw:
        # A dequantized GGUF model keeps a quantizer that refuses save_pretrained: rebuild it plain.
        cfg = model.config.to_dict()
        cfg.pop("quantization_config", None)
        plain = type(model)(type(model.config).from_dict(cfg))
        plain.load_state_dict(model.state_dict())
        model = plain.to(device=device, dtype=dtype or torch.float32)
    return model


def export(source: str, kind: str, out: str, dtype: str = "float32") -> None:
    """Save `source` as a plain transformers directory at `out` (atomically), in `dtype`
    (bfloat16 for a generator that runs on a GPU: half the disk and load time)."""
    import torch

    from jsarag.io import atomic_dir

    model = load_model(source, kind, dtype=getattr(torch, dtype))
    tok = load_tokenizer(source)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
