"""The budget summary: Snakemake benchmark files summed per rule, and malformed files refused."""
import subprocess
import sys

import pytest

from jsarag import InputError
from jsarag.report.budget import budget_table, rule_times

HEAD = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"  # as Snakemake 9 writes it


def _bench(root, rel, *rows):
    p = root / "benchmarks" / "out" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(HEAD + "".join(f"{s}\t0:00:00\t1\t1\t1\t1\t0\t0\t50\t{c}\n" for s, c in rows))
    return p


def test_rules_are_summed_over_their_jobs_and_sorted_by_cpu(tmp_path):
    _bench(tmp_path, "train/nq/rag/seed0.tsv", (100.0, 180.0))
    _bench(tmp_path, "train/perlfaq/jsa/seed0.tsv", (50.0, 60.0), (10.0, 20.0))  # a repeat line is summed too
    _bench(tmp_path, "download/a.whl.tsv", (3.0, 1.0))
    rows = rule_times(tmp_path / "benchmarks" / "out")
    assert [r["rule"] for r in rows] == ["train", "download"]
    assert (rows[0]["jobs"], rows[0]["wall_s"], rows[0]["cpu_s"]) == (2, 160.0, 260.0)
    assert rows[0]["cpu_share"] == pytest.approx(260 / 261)
    table = budget_table(tmp_path / "benchmarks" / "out", cores=2)
    assert "| train | 2 | 2.7 | 4.3 | 99.6% | 2.2 |" in table  # 260 CPU s = 4.3 min; over 2 cores 2.2
    assert table.rstrip().endswith("| all | 3 | 2.7 | 4.3 | 100% | 2.2 |")


def test_malformed_benchmark_files_name_the_file_and_line(tmp_path):
    out = tmp_path / "benchmarks" / "out"
    with pytest.raises(InputError, match="no benchmark files"):
        rule_times(out)
    bad = _bench(tmp_path, "train/x.tsv", (1.0, 2.0))
    bad.write_text(HEAD + "1.0\t0:00:01\t1\t1\t1\t1\t0\t0\t50\tNA\n")
    with pytest.raises(InputError, match=r"train/x\.tsv:2: s and cpu_time must be numbers"):
        rule_times(out)
    bad.write_text("s\th:m:s\n1\t0:00:01\n")
    with pytest.raises(InputError, match=r"train/x\.tsv:1: no column cpu_time"):
        rule_times(out)
    with pytest.raises(InputError, match="--cores must be >= 1"):
        budget_table(out, cores=0)


def test_cli_prints_the_table_and_fails_cleanly_without_files(tmp_path):
    _bench(tmp_path, "evaluate/nq/rag/seed0.tsv", (60.0, 120.0))
    ok = subprocess.run([sys.executable, "-m", "jsarag.report", "budget", "--root", str(tmp_path), "--cores", "4"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "| evaluate | 1 | 1.0 | 2.0 | 100.0% | 0.5 |" in ok.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([sys.executable, "-m", "jsarag.report", "budget", "--root", str(empty)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no benchmark files" in bad.stderr
