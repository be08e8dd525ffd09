"""Load and validate the pipeline config: JSON schema (snakemake.utils.validate) plus cross-references.

Every problem is an InputError naming the key path (e.g. `datasets.nq.corpus`), raised before any
job runs.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from jsarag import InputError

SCHEMA = Path(__file__).parent / "schemas" / "config.schema.yaml"


def load_config(path: str | Path) -> dict:
    """Read and validate a config file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{line}: malformed YAML ({getattr(e, 'problem', e)})") from None
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
    """Raise InputError (with the key path) if `cfg` breaks the schema or a cross-reference."""
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
        want_dialog = d["format"] in ("orquac", "doqa")
        if want_dialog != (d["task"] == "dialog"):
            raise InputError(f"{source}: datasets.{name}.task: format {d['format']} is a "
                             f"{'dialog' if want_dialog else 'qa'} format, task is {d['task']!r}")
    ks = cfg.get("evaluate", {}).get("k_values")
    if ks and max(ks) > 20:
        raise InputError(f"{source}: evaluate.k_values: at most 20 passages are retrieved, got {max(ks)}")
