"""The results page, results/README.md (`python -m jsarag.report page`), which a repository host shows
as it is: where the results came from, every claim's verdict with its measured value, 95% CI and
minimum detectable effect, every table, and the figures inline.

It is built from what the report stage wrote, never recomputed:
- the Markdown tables, results/tables/NAME.md for each name of jsarag.layout.TABLES, quoted whole;
- the claims check as data, results/claims_check.json (jsarag.report.claims.claims_record). That file
  records the sha256 of each table CSV and estimator file it judged; the page refuses a table that has
  changed since (rerun the claims check), so its verdicts and its tables are of the same run;
- the figures of jsarag.layout.FIGURES, linked relatively (`figures/NAME.png`); a missing one is refused;
- the config file(s) the workflow ran with (sha256) and the report's config sections (datasets, methods, seeds).

Provenance of the code: `git rev-parse HEAD` of the checkout that holds this package, and whether a
tracked file outside results/ differs from it (results/ is what the run rewrites, so it does not count).
Outside a git checkout (an installed package, or no git on PATH) the commit reads "unknown".
The page holds no date and no machine path (files are named relative to the project folder), so the
same inputs give the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from jsarag import InputError
from jsarag.io import atomic_open
from jsarag.layout import FIGURES, TABLES, Layout

TITLES = {"generation": "Generation", "retrieval_prior": "Retrieval: the prior (the retriever used at test time)",
          "retrieval_posterior": "Retrieval: the posterior (answer-aware, training only)", "cost": "Cost of training",
          "grad_norm": "Gradient norms", "mis": "MIS in JSA-RAG (acceptance, distinct states)",
          "significance": "Paired differences between methods"}
CAPTIONS = {"recall_at_k": "Recall@k of the prior retrievers and the baselines",
            "loss_curves": "Training loss per optimizer step",
            "validation_curves": "Validation recall and loss during training",
            "grad_norm_posterior": "Gradient norm of the posterior retriever (VRAG against JSA-RAG)",
            "acceptance_rate": "MIS acceptance rate during training and over the sweep",
            "estimators": "Exact gradient-estimator check: bias and variance against the exact gradient"}
UNKNOWN = "unknown"


def sha256_file(path: str | os.PathLike) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None


def _git(repo: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def code_version(repo: str | os.PathLike | None = None) -> dict:
    """{"commit": hex or "unknown", "dirty": bool or None} of the git checkout holding jsarag/ at `repo`
    (default: this package's parent folder). "unknown" unless jsarag/__init__.py is a tracked file
    there (an installed copy inside some other repository is not that repository's code)."""
    repo = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    if _git(repo, "ls-files", "--error-unmatch", "--", "jsarag/__init__.py") is None:
        return {"commit": UNKNOWN, "dirty": None}
    head = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    if head is None or status is None:
        return {"commit": UNKNOWN, "dirty": None}
    return {"commit": head.strip(), "dirty": bool(status.strip())}


def _name(path: str | os.PathLike, root: str) -> str:
    """A file's name on the page: relative to the project folder, or its base name outside it."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root or "."))
    return Path(rel).as_posix() if not rel.startswith("..") else Path(path).name


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(x: float | None, sign: str = "+") -> str:
    """Two decimals (points, seconds); a smaller nonzero figure (a relative bias) in scientific notation."""
    if x is None:
        return "—"
    return format(x, f"{sign}.2f") if x == 0 or abs(x) >= 0.01 else format(x, f"{sign}.2e")


def read_claims(layout: Layout) -> dict:
    """The claims check as data (Layout.claims_json), after checking that the files it judged are unchanged."""
    path = layout.claims_json()
    try:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found: run the claims check first (python -m jsarag.report claims)") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    for key in ("claims", "counts", "sources", "verdicts"):
        if key not in rec:
            raise InputError(f"{path}: no '{key}' (written by an older claims check? rerun it)")
    for rel, want in rec["sources"].items():
        p = os.path.join(layout.root, rel) if layout.root else rel
        have = sha256_file(p) if os.path.exists(p) else "missing"
        if have != want:
            raise InputError(f"{path}: judged {rel} with sha256 {want}, the file now has {have}: "
                             "rerun the claims check (python -m jsarag.report claims)")
    return rec


def _provenance(cfg, rec: dict, configs: list[str], layout: Layout, version: dict) -> list[str]:
    commit = version["commit"]
    if commit != UNKNOWN:
        commit = f"`{commit}`" + (" with uncommitted changes to tracked files outside results/" if version["dirty"] else " (clean)")
    else:
        commit = "unknown (not run from a git checkout of this repository)"
    cfg_cells = [f"`{_name(p, layout.root)}` (sha256 `{sha256_file(p)}`)" for p in configs] or ["not given"]
    counts = ", ".join(f"{n} {s}" for s, n in rec["counts"].items())
    rows = [("code", commit), ("config", "; ".join(cfg_cells)),
            ("datasets", ", ".join(f"{d} ({task})" for d, task in cfg.datasets.items())),
            ("methods", ", ".join(map(str, cfg.methods))), ("seeds", ", ".join(map(str, cfg.seeds))),
            ("claims", f"`{rec['claims']}`: {counts}")]
    return ["| | |", "|:--|:--|", *(f"| {k} | {_cell(v)} |" for k, v in rows)]


def _claims(rec: dict, full: str) -> list[str]:
    out = ["| verdict | claim | measured | 95% CI | MDE | compared | the paper's claim |",
           "|:--|:--|--:|:--|--:|:--|:--|"]
    for v in rec["verdicts"]:
        ci = "—" if v["lo"] is None else f"[{_num(v['lo'])}, {_num(v['hi'])}]"
        where = v["where"] + (f": {v['detail']}" if v["status"] == "SKIP" else "")  # why it was skipped
        out.append(f"| {v['status']} | `{_cell(v['id'])}` | {_num(v['measured'])} | {ci} | {_num(v['mde'], '')} | "
                   f"{_cell(where)} | {_cell(v['text'])} |")
    return out + ["", "Deltas in points of the metric. CONFIRMED: the 95% CI lies on the claimed side of 0 (and within the "
                  "claimed size, if any); REFUTED: on the wrong side, or excluding the claimed size; INCONCLUSIVE: the CI "
                  "includes 0 and the claimed effect; SKIP: the data is missing. MDE: the difference detectable at 80% power "
                  "with this CI's width (2.80 standard errors). Each verdict's full line (p-values, the claimed size, the "
                  f"reason): [{full}]({full})."]


def build_page(layout: Layout, cfg, configs: list[str] = (), version: dict | None = None) -> str:
    """The text of results/README.md (see the module doc). `cfg`: a jsarag.config.ReportConfig."""
    results = Path(layout.page()).parent
    rel = lambda p: Path(os.path.relpath(p, results)).as_posix()  # noqa: E731 (links relative to the page)
    rec = read_claims(layout)
    version = version if version is not None else code_version()
    lines = ["# Results", "",
             "Written by `python -m jsarag.report page` (the workflow's `report_page` rule) from the tables, figures "
             "and claims check in this folder; nothing on this page is typed in by hand. The same inputs give the same "
             "page: it holds no date.", "", "## Where these results come from", "",
             *_provenance(cfg, rec, list(configs), layout, version), "",
             "## The paper's claims", "", *_claims(rec, rel(layout.claims_check())), "",
             "## Tables", ""]
    inputs = [layout.claims_json()]
    for t in TABLES:
        md = layout.table(t, "md")
        try:
            body = Path(md).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise InputError(f"{md}: not found: build the tables first (python -m jsarag.report tables)") from None
        inputs.append(md)
        others = " · ".join(f"[{fmt}]({rel(layout.table(t, fmt))})" for fmt in ("csv", "tex"))
        lines += [f"### {TITLES.get(t, t)}", "", body, "", f"`{t}`: {others}", ""]
    lines += ["## Figures", ""]
    for f in FIGURES:
        png = layout.figure(f)
        if not os.path.isfile(png):
            raise InputError(f"{png}: not found: build the figures first (python -m jsarag.report figures)")
        inputs.append(png)
        lines += [f"### {CAPTIONS.get(f, f)}", "", f"![{f}]({rel(png)})", ""]
    lines += ["## Files this page was built from", "", "| file | sha256 |", "|:--|:--|",
              *(f"| {_name(p, layout.root)} | `{sha256_file(p)}` |" for p in inputs)]
    return "\n".join(lines) + "\n"


def write_page(layout: Layout, cfg, configs: list[str] = (), version: dict | None = None) -> str:
    """Write results/README.md atomically; returns its path."""
    text = build_page(layout, cfg, configs, version)
    with atomic_open(layout.page()) as f:
        f.write(text)
    return layout.page()
