"""Perl's FAQ as a grounded dialog task: the deb download kind (a fake apt-get), .deb members, the
POD rendering, the perl_pod corpus and perlfaq dataset on a real-format .deb of perl-doc excerpts."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from jsarag import InputError
from jsarag.data.archive import open_text
from jsarag.data.corpora import prepare_corpus
from jsarag.data.datasets import prepare_dataset
from jsarag.data.download import download_filename, fetch
from jsarag.data.perlfaq import read_perlfaq, render, sections
from jsarag.io import read_jsonl
from jsarag.layout import Layout

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures" / "perlfaq"
POD_DIR = "usr/share/perl/5.36.0/pod"
CORPUS = {"format": "perl_pod", "download": "perl_doc", "member": POD_DIR, "passage_words": 40}
DATASET = {"task": "dialog", "corpus": "perldoc", "format": "perlfaq", "download": "perl_doc",
           "members": {"train": POD_DIR}, "target_words": 20, "n_valid": 2, "n_test": 2}
OCTAL = "perlfaq4/Why_isn't_my_octal_data_interpreted_correctly?"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed (the dpkg package builds and reads the .deb fixture)")
    out = tmp_path_factory.mktemp("deb") / "perl-doc-fixture.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(FIX / "root"), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def corpus(deb, tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    prepare_corpus({**CORPUS, "expect_passages": 40}, deb, d / "passages.jsonl", d / "stats.json")
    return d


def test_deb_members_with_or_without_dot_slash(deb, tmp_path, monkeypatch):
    for member in (f"./{POD_DIR}/perlsyn.pod", f"{POD_DIR}/perlsyn.pod"):
        with open_text(deb, member) as f:
            assert f.read().startswith("=head1 NAME\nX<syntax>")
    with pytest.raises(InputError, match=r"no member 'usr/share/perl/5.36.0/pod/perlfunc.pod'"):
        with open_text(deb, f"{POD_DIR}/perlfunc.pod"):
            pass
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(InputError, match=r"needs dpkg-deb"):
        with open_text(deb, f"{POD_DIR}/perlsyn.pod"):
            pass


def test_corpus_counts_titles_and_no_question_in_faq_passages(corpus):
    stats = json.loads((corpus / "stats.json").read_text())
    assert (stats["passages"], stats["pods"]) == (40, 5)
    ps = list(read_jsonl(corpus / "passages.jsonl"))
    faq = [p for p in ps if p["id"].startswith("perlfaq")]
    assert {p["title"] for p in faq} == {"perlfaq4", "perlfaq5", "perlfaq8"}  # the pod name alone
    questions = [s.heading for pod in ("perlfaq4", "perlfaq8") for s in sections(pod, (FIX / "root" / POD_DIR / f"{pod}.pod").read_text())
                 if s.level == 2]
    assert len(questions) == 7 and "Why don't my <<HERE documents work?" in questions
    for q in questions:
        assert not [p["id"] for p in faq if q in p["contents"]], q
    syn = {p["title"] for p in ps if p["id"].startswith("perlsyn/")}  # not a FAQ: the heading is the title
    assert syn == {"perlsyn: NAME", "perlsyn: DESCRIPTION", "perlsyn: Experimental Details on given and when", "perlsyn: SEE ALSO"}
    assert len({p["id"] for p in ps}) == len(ps)


def test_pod_rendering_of_the_real_quirks(corpus):
    text = {p["id"]: p["contents"] for p in read_jsonl(corpus / "passages.jsonl")}
    allc = " ".join(text.values())
    assert "0 <= rand($x) < $x" in allc  # C<< ... >> with < and > inside
    assert "There must be no space after the << part." in allc  # =item text, E<lt>
    assert '"crypt" in perlfunc' in allc and "Get the http://www.cpan.org/modules/by-module/Roman module." in allc
    assert "Breaking out You can use the break keyword" in allc  # =head3 kept in its =head2
    assert "ReadMode('noecho'); my $password = ReadLine(0);" in allc  # verbatim code kept
    assert text["perlsyn/SEE_ALSO#0"] == '"How do I get a random number between X and Y?" in perlfaq4'
    assert text["perluniprops/NAME#0"].startswith("perluniprops - Index of Unicode")
    for gone in ("DO NOT EDIT", "mktables", "X<", "=item", "=over", "=back", "=cut", "=for", "not POD and is not read",
                 "is dropped", "footer>"):
        assert gone not in allc, gone
    assert render("C<< $a->b >> I<x> B<C<y>> E<gt>E<sol>E<0x41>E<eacute> L<Foo|http://x.org/> L</sec> Z<>S<a b>") == \
        "$a->b x y >/Aé Foo <http://x.org/> \"sec\" a b"


def test_attribution_is_not_in_the_answer_or_its_passages(deb, corpus):
    ex = {e["id"]: e for _, e in read_perlfaq(deb, POD_DIR, "fixture")}
    assert ex[OCTAL]["target"].startswith("You're probably trying to convert a string")
    octal = [p["contents"] for p in read_jsonl(corpus / "passages.jsonl") if p["id"].startswith(OCTAL + "#")]
    assert len(octal) == 7 and octal[0].startswith("You're probably") and "contributed by" not in " ".join(octal)
    # a parenthetical first paragraph that is not an attribution stays
    assert ex["perlfaq8/How_do_I_ask_the_user_for_a_password?"]["target"].startswith("(This question has nothing to do with the web.")


def test_dataset_counts_drops_and_gold_resolve_to_the_section_passages(deb, corpus, tmp_path):
    layout = Layout(root=tmp_path)
    stats = prepare_dataset("perlfaq", {**DATASET, "expect": {"train": 8}}, {"perl_doc": str(deb)}, str(corpus / "passages.jsonl"), layout)
    assert stats["read"] == {"train": 8} and stats["dropped_by_reader"] == {"train": {"empty_answer": 1}}
    assert stats["written"] == {"train": 4, "valid": 2, "test": 2}
    ids = [p["id"] for p in read_jsonl(corpus / "passages.jsonl")]
    rows = [e for s in ("train", "valid", "test") for e in read_jsonl(layout.split("perlfaq", s))]
    assert len(rows) == 8
    for e in rows:
        assert e["history"] == [] and len(e["target"].split()) <= 20
        assert e["gold_passages"] == [i for i in ids if i.rpartition("#")[0] == e["id"]], e["id"]  # every passage of the section, in order
    by_id = {e["id"]: e for e in rows}
    assert len(by_id[OCTAL]["gold_passages"]) == 7
    assert "perlfaq5/How_can_I_set_up_a_footer_format_to_be_used_with_write()?~2" in by_id  # the repeated heading; the empty one dropped
    with pytest.raises(InputError, match=r"perlfaq format needs --corpus"):
        prepare_dataset("perlfaq", DATASET, {"perl_doc": str(deb)}, None, Layout(root=tmp_path / "nocorpus"))
    assert not (tmp_path / "nocorpus").exists() or not list((tmp_path / "nocorpus").rglob("*.jsonl"))


# --- the deb download kind -------------------------------------------------------------------------
DEB_BYTES = b"!<arch>\nnot really a package\n"
SPEC = {"deb": "perl-doc", "version": "5.36.0-7+deb12u4", "sha256": hashlib.sha256(DEB_BYTES).hexdigest()}


def _fake_apt(tmp_path, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text("#!/bin/sh\n" + body)
    apt.chmod(0o755)
    return bin_dir


def test_deb_download_with_a_fake_apt_get(tmp_path, monkeypatch):
    log = tmp_path / "args"
    bin_dir = _fake_apt(tmp_path, f'echo "$@" > {log}\n'
                                  'printf \'!<arch>\\nnot really a package\\n\' > "perl-doc_5.36.0-7+deb12u4_all.deb"\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "dl" / download_filename("perl_doc", SPEC)
    assert out.name == "perl_doc.deb"
    fetch("perl_doc", SPEC, out)
    assert out.read_bytes() == DEB_BYTES and log.read_text().strip() == "download perl-doc=5.36.0-7+deb12u4"
    assert sorted(p.name for p in out.parent.iterdir()) == ["perl_doc.deb"]
    # a pinned sha256 that differs: an error naming both, and no file
    out.unlink()
    with pytest.raises(InputError, match=r"downloads\.perl_doc\.sha256: expected 0{64}, got " + SPEC["sha256"]):
        fetch("perl_doc", {**SPEC, "sha256": "0" * 64}, out)
    assert list(out.parent.iterdir()) == []


def test_deb_download_failure_and_missing_apt_leave_nothing(tmp_path, monkeypatch):
    bin_dir = _fake_apt(tmp_path, "printf partial > half.deb\necho \"E: Version '5.36.0-7+deb12u4' for 'perl-doc' was not found\" >&2\n"
                                  "exit 100\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    out = tmp_path / "dl" / "perl_doc.deb"
    with pytest.raises(InputError, match=r"downloads\.perl_doc: apt-get download perl-doc=5\.36\.0-7\+deb12u4 failed \(exit 100.*"
                                         r"was not found"):
        fetch("perl_doc", SPEC, out)
    assert list(out.parent.iterdir()) == []
    (bin_dir / "apt-get").unlink()
    with pytest.raises(InputError, match=r"downloads\.perl_doc: the deb kind needs apt-get .* path: entry"):
        fetch("perl_doc", SPEC, out)
    assert list(out.parent.iterdir()) == []


def test_deb_falls_back_to_the_pool_url_when_apt_lacks_the_version(tmp_path, monkeypatch, caplog):
    bin_dir = _fake_apt(tmp_path, "echo \"E: Version '5.36.0-7+deb12u4' for 'perl-doc' was not found\" >&2\nexit 100\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    pool = tmp_path / "pool" / "perl-doc_5.36.0-7+deb12u4_all.deb"
    pool.parent.mkdir()
    pool.write_bytes(DEB_BYTES)
    out = tmp_path / "dl" / "perl_doc.deb"
    with caplog.at_level("WARNING", logger="jsarag.download"):
        fetch("perl_doc", {**SPEC, "urls": [pool.as_uri()]}, out)
    assert out.read_bytes() == DEB_BYTES and sorted(p.name for p in out.parent.iterdir()) == ["perl_doc.deb"]
    assert "was not found; fetching the pool URL instead" in caplog.text
    # the pool copy changed: the sha256 pin refuses it, naming the pool URL, and nothing is left
    out.unlink()
    pool.write_bytes(DEB_BYTES + b"x")
    with pytest.raises(InputError, match=r"downloads\.perl_doc\.sha256: expected .* fetched from file://"):
        fetch("perl_doc", {**SPEC, "urls": [pool.as_uri()]}, out)
    # no pool file either: one error naming both sources
    pool.unlink()
    with pytest.raises(InputError, match=r"downloads\.perl_doc: neither apt-get nor the pool URLs gave perl-doc=5\.36\.0-7\+deb12u4"):
        fetch("perl_doc", {**SPEC, "urls": [pool.as_uri()]}, out)
    assert list(out.parent.iterdir()) == []


def test_shipped_perlfaq_config_is_valid_and_pins_the_package():
    from jsarag.config import load_config, run_params

    cfg = load_config(ROOT / "config.yaml")  # the embedded default runs it beside NQ
    assert cfg["downloads"]["perl_doc"]["deb"] == "perl-doc" and cfg["corpora"]["perldoc"]["expect_passages"] > 0
    faq, nq = (run_params(cfg, d, "jsa", 0, evaluate=True) for d in ("perlfaq", "nq"))
    assert (faq["task"], faq["train"]["max_target_tokens"], faq["evaluate"]["max_new_tokens"]) == ("dialog", 48, 48)
    assert (nq["train"]["max_target_tokens"], nq["evaluate"]["max_new_tokens"]) == (32, 12)  # its own keys stay its own
    bad = {**cfg, "downloads": {**cfg["downloads"], "perl_doc": {"deb": "perl-doc", "version": "5.36.0-7+deb12u4"}}}
    from jsarag.config import validate_config

    with pytest.raises(InputError, match=r"downloads\.perl_doc"):
        validate_config(bad, source="x")
