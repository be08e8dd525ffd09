"""The config check at every numeric bound, the gres resource, exact t quantiles, no machine path in
tests/ or results/, skips that name only a missing tool, and a pyproject that declares what the code
imports (installed with the compiled constraints file)."""
from __future__ import annotations

import ast
import copy
import importlib.metadata as md
import io
import re
import sys
import tokenize
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from jsarag import InputError
from jsarag.config import SCHEMA, read_yaml, validate_config

ROOT = Path(__file__).resolve().parents[1]
CFG = read_yaml(ROOT / "config.yaml")


# --- 3. the config check at each numeric bound ------------------------------------------------
def _resolve(node: dict, schema: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _numeric(node: dict) -> bool:
    t = node.get("type")
    return any(x in ("integer", "number") for x in (t if isinstance(t, list) else [t]))


def numeric_fields(schema: dict) -> list[tuple[tuple, dict]]:
    """(config path, schema node) of every numeric value: "[]" marks a list's items; the entries of
    corpora/datasets are reached through the embedded default's first one, resources through train."""
    out = []

    def walk(node, path):
        node = _resolve(node, schema)
        if _numeric(node):
            out.append((path, node))
        for k, sub in (node.get("properties") or {}).items():
            walk(sub, (*path, k))
        if "items" in node and isinstance(node["items"], dict):
            walk(node["items"], (*path, "[]"))
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and path and path[-1] in ("corpora", "datasets"):
            walk(extra, (*path, next(iter(CFG[path[-1]]))))

    walk(schema, ())
    return out


SCHEMA_DOC = yaml.safe_load(SCHEMA.read_text())
FIELDS = numeric_fields(SCHEMA_DOC)


def with_value(path: tuple, value) -> dict:
    """config.yaml with `value` at `path` (a list's items: a list of it, two for the betas)."""
    cfg = copy.deepcopy(CFG)
    if path[-1] == "[]":
        path, value = path[:-1], [value] * (2 if path[-2] == "betas" else 1)
    node = cfg
    for k in path[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[path[-1]] = value
    return cfg


def bounds(node: dict) -> list[tuple[object, object]]:
    """(accepted value at the bound, refused value just past it) for each bound of a numeric node."""
    step = 1 if node.get("type") == "integer" or "integer" in (node.get("type") or []) else 1e-6
    out = []
    if "minimum" in node:
        out.append((node["minimum"], node["minimum"] - step))
    if "exclusiveMinimum" in node:
        out.append((node["exclusiveMinimum"] + step, node["exclusiveMinimum"]))
    if "maximum" in node:
        out.append((node["maximum"], node["maximum"] + step))
    if "exclusiveMaximum" in node:
        out.append((node["exclusiveMaximum"] - step, node["exclusiveMaximum"]))
    return out


def test_every_numeric_field_has_a_lower_bound():
    unbounded = [".".join(p) for p, n in FIELDS if "minimum" not in n and "exclusiveMinimum" not in n
                 and p[-1] not in ("version",)]  # a download's version is a label, not a quantity
    assert len(FIELDS) > 50 and unbounded == []


@pytest.mark.parametrize("path,node", FIELDS, ids=[".".join(p) for p, _ in FIELDS])
def test_numeric_field_at_its_bound(path, node):
    for ok, bad in bounds(node):
        validate_config(with_value(path, ok))
        key = ".".join(p for p in path if p != "[]")
        with pytest.raises(InputError, match=re.escape(key.split(".")[-1])):
            validate_config(with_value(path, bad))


def test_bootstrap_zero_refused_and_one_runs():
    from jsarag.report.stats import bootstrap_ci, paired_bootstrap

    with pytest.raises(InputError, match=r"evaluate\.bootstrap: 0 is less than the minimum of 1"):
        validate_config(with_value(("evaluate", "bootstrap"), 0))
    x = np.arange(10.0)
    assert np.isfinite(bootstrap_ci(x, n_boot=1)).all() and np.isfinite(paired_bootstrap(x, x[::-1], n_boot=1)).all()


def test_clip_zero_and_topk_decode_beyond_retrieval_refused():
    with pytest.raises(InputError, match=r"train\.common\.clip: 0"):
        validate_config(with_value(("train", "common", "clip"), 0))
    cfg = with_value(("evaluate", "decoding"), ["top1", "topk"])
    cfg["evaluate"]["k_values"], cfg["evaluate"]["topk_decode"] = [1, 5], 10
    with pytest.raises(InputError, match=r"evaluate\.topk_decode: top-k decoding reads the top 10 passages, .* = 5 are retrieved"):
        validate_config(cfg)
    cfg["evaluate"]["topk_decode"] = 5
    validate_config(cfg)


# --- 9. exact t quantiles ----------------------------------------------------------------------
def test_t_quantiles_from_scipy():
    from jsarag.report.stats import t_quantile, z_quantile

    assert abs(t_quantile(0.975, 1) - 12.7062047) < 1e-6 and abs(t_quantile(0.975, 4) - 2.7764451) < 1e-6
    assert abs(t_quantile(0.975, 30) - 2.0422725) < 1e-6  # past the old table's end (df <= 10)
    assert abs(z_quantile(0.975) - 1.959964) < 1e-6
    with pytest.raises(InputError, match="df >= 1"):
        t_quantile(0.975, 0)


# --- 10. gres -----------------------------------------------------------------------------------
def test_gres_resource_reaches_the_slurm_plugin_as_documented():
    from snakemake_executor_plugin_slurm.partitions import parse_gpu_requirements
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    from jsarag.resources import rule_resources

    def job(res):
        return SimpleNamespace(resources=SimpleNamespace(get=res.get, **res))

    r = rule_resources({"resources": {"train": {"gpu": 2, "gres": True}}}, "train", 4)
    assert r["gres"] == "gpu:2" and "gpu" not in r and "gpu_model" not in r
    assert set_gres_string(job(r)) == " --gres=gpu:2" and parse_gpu_requirements(job(r)) == (2, None)
    r = rule_resources({"resources": {"train": {"gpu": 4, "gpu_model": "a100", "gres": True}}}, "train", 4)
    assert set_gres_string(job(r)) == " --gres=gpu:a100:4" and parse_gpu_requirements(job(r)) == (4, "a100")
    assert "gres" not in rule_resources({"resources": {"evaluate": {"gres": True}}}, "evaluate", 1)  # no GPU: nothing asked
    plain = rule_resources({"resources": {"train": {"gpu": 2}}}, "train", 4)
    assert "gres" not in plain and set_gres_string(job(plain)) == " --gpus=2"
    validate_config(with_value(("resources", "train", "gres"), True))
    with pytest.raises(InputError, match=r"resources\.train\.gres"):
        validate_config(with_value(("resources", "train", "gres"), "gpu:2"))
    with pytest.raises(InputError, match=r"resources\.train\.gpu_model"):
        validate_config(with_value(("resources", "train", "gpu_model"), "'a100'"))


# --- 6./7. no machine path ------------------------------------------------------------------------
MACHINE_PATH = re.compile(rb"(?<![\w.~-])/(?:work|home|root|tmp|Users|mnt|scratch|opt|usr|var|private|srv|gpfs|lustre|nfs|cluster|data)/")


def test_committed_results_hold_no_machine_path():
    files = [p for p in (ROOT / "results").rglob("*") if p.is_file()]
    assert any(p.name == "report.html" for p in files)
    hits = {str(p.relative_to(ROOT)): m.group(0) for p in files for m in [MACHINE_PATH.search(p.read_bytes())] if m}
    assert hits == {}


# test_layout's made-up root, on no machine; the kernel's process files, on every Linux; the URL path
# of the local test server in test_downloads.py
ALLOWED_ABSOLUTE = {"/x", "/proc", "/file.bin"}


def test_no_absolute_path_in_tests():
    """Every string literal and comment of tests/*.py: none is an absolute path (a test must run in
    any clone), except the made-up layout root."""
    hits = []
    for p in sorted((ROOT / "tests").rglob("*.py")):
        for tok in tokenize.generate_tokens(io.StringIO(p.read_text()).readline):
            if tok.type == tokenize.STRING:
                text = ast.literal_eval(tok.string) if not tok.string.lstrip("rbuRBU").startswith(("f", "F")) else tok.string
                text = text.decode("latin-1") if isinstance(text, bytes) else text
                cands = re.findall(r"^(/[A-Za-z_][\w.-]*)", text.strip())
            elif tok.type == tokenize.COMMENT:
                cands = re.findall(r"(?<![\w.~:$}/-])(/[A-Za-z_][\w.-]*)/", tok.string)
            else:
                continue
            hits += [f"{p.name}:{tok.start[0]}: {c}" for c in cands if c not in ALLOWED_ABSOLUTE]
    assert hits == []


SKIP_REASON = re.compile(r"not installed|cannot be installed|CUDA", re.I)


def test_skips_name_only_a_missing_tool():
    """pytest.skip / skipif reasons in tests/: each names a tool that is absent, never a file."""
    reasons = []
    for p in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("skip", "skipif", "importorskip"):
                texts = [ast.unparse(a) for a in [*node.args, *(k.value for k in node.keywords if k.arg in ("reason", "msg"))]]
                reasons.append((p.name, node.lineno, " ".join(texts)))
    bad = [r for r in reasons if r[0] != Path(__file__).name and not SKIP_REASON.search(r[2])]
    assert reasons and bad == []


# --- 8. the environment -----------------------------------------------------------------------
RUNTIME_ONLY = {  # declared, needed, never imported by name
    "accelerate": "transformers loads a GGUF file only with it",
    "gguf": "transformers reads GGUF files with it",
    "tabulate": "pandas.DataFrame.to_markdown",
    "snakemake-executor-plugin-slurm": "snakemake's slurm executor",
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_distributions() -> set[str]:
    mods = set()
    for p in (ROOT / "jsarag").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                mods |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split(".")[0])
    mods -= set(sys.stdlib_module_names) | {"jsarag"}
    dists = md.packages_distributions()
    missing = sorted(m for m in mods if m not in dists)
    assert missing == [], f"imported but not installed: {missing}"
    return {_norm(d) for m in mods for d in dists[m]}


def declared() -> dict[str, str]:
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_norm(re.split(r"[=<>!~\[; ]", d, maxsplit=1)[0]): d for d in deps}


def test_pyproject_declares_what_the_code_imports_and_only_that():
    used, dec = imported_distributions(), declared()
    assert sorted(used - set(dec)) == []  # imported, not declared
    assert sorted(set(dec) - used - set(RUNTIME_ONLY)) == []  # declared, never used


def test_constraints_pin_every_installed_requirement_and_install_uses_them():
    lock = (ROOT / "envs" / "constraints.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", lock, re.M))
    pins = {_norm(k): v for k, v in pins.items()}
    for name, spec in declared().items():
        assert name in pins and spec.endswith(f"=={pins[name].split('+')[0]}"), (name, spec, pins.get(name))
    assert pins["torch"] == "2.13.0+cpu" and not any(k.startswith(("nvidia-", "triton")) for k in pins)  # the CPU build, no CUDA
    install = (ROOT / "envs" / "install.sh").read_text()
    pip_lines = [ln for ln in install.splitlines() if re.search(r"pip install", ln) and not ln.lstrip().startswith("#")]
    assert pip_lines and all("-c envs/constraints.txt" in ln or "--no-deps" in ln for ln in pip_lines), pip_lines
    deploy = (ROOT / "envs" / "jsarag.post-deploy.sh").read_text()  # the conda env installs the same, from the same lock
    assert [ln.split("pip install", 1)[1].strip() for ln in deploy.splitlines() if ln.startswith("pip install")] == \
           [ln.split("pip install -q", 1)[1].strip() for ln in pip_lines]
    env = yaml.safe_load((ROOT / "envs" / "jsarag.yaml").read_text())
    assert env["dependencies"][0].startswith("python=3.11") and env["dependencies"][1:] == ["pip"]  # pyproject: Python 3.11
