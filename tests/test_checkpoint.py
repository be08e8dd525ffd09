"""Checkpoint files (jsarag/train/checkpoint.py): a save is durable and keeps the previous checkpoint,
a torn latest one is skipped for the previous one (to the weights of an uninterrupted run), stale
temp files go at start, and a checkpoint holds the trainable state only."""
from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from jsarag import InputError
from jsarag.data.examples import load_examples
from jsarag.train import TRAINERS
from jsarag.train.checkpoint import (
    CheckpointFiles,
    Unreadable,
    checkpoint_bytes,
    mistral_7b_lora_params,
    read_checkpoint,
)
from jsarag.train.distributed import DataParallel


def make_cfg(**kw):
    base = dict(epochs=2, batch_size=2, lr_generator=1e-3, lr_retriever=1e-3, warmup_steps=1, k=3, tau=1.0, threads=1,
                checkpoint_every=2, lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, max_input_tokens=128)
    return TRAINERS["jsa"].config_class.from_dict({**base, **kw})


def rows(path):
    drop = ("step_time", "tokens_per_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in path.read_text().splitlines()]


def fake_ck(step: int) -> dict:
    return {"fingerprint": "f", "step": step, "model": {"w": torch.full((256, 256), float(step))}, "optimizer": {}, "scheduler": {},
            "state": {}, "log": [], "rng": {}, "index_refresh_step": None}


def test_torn_latest_checkpoint_resumes_from_the_previous_one(tiny_model_factory, tiny_kb, tmp_path, caplog):
    """JSA-RAG with an index refresh every step, checkpoints every 2 of 6 steps. A run killed after
    step 5 leaves last.pt (step 4) and previous.pt (step 2); last.pt is then torn (cut in half) and a
    killed writer's temp file lies beside it. The restart removes the temp file, reads previous.pt
    and its refresh rows, redoes steps 3-6 and ends with the weights and log of an uninterrupted run."""
    examples = load_examples(tiny_kb / "train.jsonl")
    cfg = make_cfg(index_refresh=1)
    straight = TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), examples, tmp_path / "a")
    straight.train(progress=False)
    killed = TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), examples, tmp_path / "b")
    assert killed.train(progress=False, stop_after=5) is None
    ck_dir = tmp_path / "b" / "checkpoint"
    assert torch.load(ck_dir / "previous.pt", weights_only=False)["step"] == 2
    assert sorted(p.name for p in ck_dir.glob("index-refresh.*")) == [f"index-refresh.step{s}.rank0of1.npy" for s in (2, 4, 5)]
    last = ck_dir / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    stale = ck_dir / ".last.pt.k1ll3d.tmp"
    stale.write_bytes(b"\0" * 4096)
    (tmp_path / "b" / "metrics.jsonl").unlink()
    torch.manual_seed(1234)
    resumed = TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), examples, tmp_path / "b")
    with caplog.at_level(logging.WARNING, logger="jsarag.train"):
        assert resumed.train(progress=False, stop_after=4) is None  # killed again, after one save
    assert not stale.exists() and "removing a temp file left by a killed writer" in caplog.text
    assert "cannot resume from" in caplog.text and "resuming from" in caplog.text and "previous.pt (step 2)" in caplog.text
    # the save of step 4 kept the good previous.pt (the torn file was moved aside, not rotated into it)
    assert read_checkpoint(ck_dir / "previous.pt")["step"] == 2 and read_checkpoint(ck_dir / "last.pt")["step"] == 4
    (tmp_path / "b" / "metrics.jsonl").unlink()
    resumed = TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), examples, tmp_path / "b")
    resumed.train(progress=False)
    a, b = straight.trainable_state(), resumed.trainable_state()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows(tmp_path / "a" / "metrics.jsonl") == rows(tmp_path / "b" / "metrics.jsonl")


def test_a_zeroed_range_inside_a_tensor_is_caught_by_its_crc(tmp_path):
    files = CheckpointFiles(tmp_path)
    files.write(fake_ck(1))
    data = files.latest.read_bytes()
    mid = len(data) // 2
    files.latest.write_bytes(data[:mid] + b"\0" * 4096 + data[mid + 4096:])
    assert torch.load(files.latest, weights_only=False)["step"] == 1  # torch.load alone reads wrong weights
    with pytest.raises(Unreadable, match="CRC-32"):
        read_checkpoint(files.latest)


def test_a_save_is_fsynced_around_its_rename_and_keeps_the_previous_one(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(a), str(b))), real_replace(a, b)))
    files = CheckpointFiles(tmp_path)
    files.write(fake_ck(1))
    events.clear()
    files.write(fake_ck(2))
    assert read_checkpoint(files.latest)["step"] == 2 and read_checkpoint(files.previous)["step"] == 1
    kinds = [e[0] for e in events]
    # last -> previous, then the temp file is flushed, renamed onto last.pt, and the folder flushed
    assert kinds == ["replace", "fsync", "replace", "fsync"], events
    assert events[0][1:] == (str(files.latest), str(files.previous))
    assert events[1][1] == events[2][1] and events[1][1].endswith(".tmp") and events[2][2] == str(files.latest)
    assert events[3][1] == str(tmp_path)
    assert not list(tmp_path.glob(".*.tmp"))


class OtherRankCannotRead(DataParallel):
    """Rank 0 of two, whose peer cannot read last.pt: its answers to `any` are those of the peer."""

    def __init__(self):
        super().__init__(world=2)
        self.calls = 0

    def any(self, flag: bool) -> bool:
        self.calls += 1
        return True if self.calls <= 2 else flag  # last.pt: "a rank has no checkpoint", "it exists there"


def test_all_ranks_resume_from_the_same_file(tmp_path):
    files = CheckpointFiles(tmp_path)
    files.write(fake_ck(1))
    files.write(fake_ck(2))
    ck, path = CheckpointFiles(tmp_path).load(OtherRankCannotRead())  # rank 0 reads last.pt, its peer does not
    assert path.name == "previous.pt" and ck["step"] == 1


def test_refresh_rows_are_on_disk_before_the_checkpoint_that_names_them(tiny_model_factory, tiny_kb, tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b)))
    cfg = make_cfg(index_refresh=2, max_steps=2)
    tr = TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), load_examples(tiny_kb / "train.jsonl"), tmp_path)
    assert tr.train(progress=False, stop_after=2) is None
    rows = str(tmp_path / "checkpoint" / "index-refresh.step2.rank0of1.npy")
    onto_last = events.index(("replace", str(tmp_path / "checkpoint" / "last.pt")))
    assert ("fsync", rows) in events[:onto_last], events


def test_no_readable_checkpoint_is_an_error_naming_both(tmp_path):
    files = CheckpointFiles(tmp_path)
    files.write(fake_ck(1))
    files.write(fake_ck(2))
    for p in (files.latest, files.previous):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(InputError, match=r"no checkpoint can be read: .*last\.pt.*previous\.pt"):
        CheckpointFiles(tmp_path).load(DataParallel())
    assert CheckpointFiles(tmp_path / "none").load(DataParallel()) is None


def test_a_save_cut_short_after_the_move_resumes_from_previous(tmp_path, caplog):
    files = CheckpointFiles(tmp_path)
    files.write(fake_ck(1))
    files.write(fake_ck(2))
    files.latest.unlink()  # killed between moving last.pt to previous.pt and renaming the new one onto last.pt
    with caplog.at_level(logging.WARNING, logger="jsarag.train"):
        ck, path = CheckpointFiles(tmp_path).load(DataParallel())
    assert path == files.previous and ck["step"] == 1 and "no last.pt (a save was cut short" in caplog.text


def test_a_checkpoint_holds_the_trainable_state_and_its_adam_moments_only(tiny_model_factory, tiny_kb, tmp_path):
    examples = load_examples(tiny_kb / "train.jsonl")
    cfg = make_cfg(max_steps=2)
    tr = TRAINERS["jsa"](cfg, tiny_model_factory("jsa", cfg), examples, tmp_path)
    assert tr.train(progress=False, stop_after=2) is None
    ck = torch.load(tmp_path / "checkpoint" / "last.pt", weights_only=False)
    trainable = {n: p for n, p in tr.model.named_parameters() if p.requires_grad}
    assert set(ck["model"]) == set(trainable)  # no frozen weight: not the generator's base, not the pooler
    assert any("lora" in n for n in trainable) and any(n.startswith("posterior.") for n in trainable)
    n = sum(p.numel() for p in trainable.values())
    moments = [t for s in ck["optimizer"]["state"].values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert sum(t.numel() for t in moments) == 2 * n
    size = (tmp_path / "checkpoint" / "last.pt").stat().st_size
    assert checkpoint_bytes(n) <= size < checkpoint_bytes(n) * 1.05 + 200_000  # tensors, and little else


def test_checkpoint_bytes_at_paper_shape():
    lora = mistral_7b_lora_params(8)
    assert lora == 32 * 8 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336))
    bge_large = 335_000_000
    assert checkpoint_bytes(lora + 2 * bge_large) / 1e9 == pytest.approx(8.29, abs=0.01)  # VRAG, JSA-RAG: two query encoders
    assert checkpoint_bytes(lora + bge_large) / 1e9 == pytest.approx(4.27, abs=0.01)  # RAG: one
