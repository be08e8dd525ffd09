"""Data-parallel training on CPU with gloo (jsarag/train/distributed.py) and preemption
(jsarag/train/preemption.py): 2 processes equal 1 process with twice the per-process accumulation,
and a 2-process run stopped by SIGTERM and restarted ends with the weights of an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from jsarag.train.preemption import EXIT_PREEMPTED

HERE = Path(__file__).resolve()
TIMEOUT = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, out: Path, assets: dict, sigterm_at: int = 0) -> list[int]:
    """Run `world` worker processes (as torchrun would: RANK, WORLD_SIZE, MASTER_*); return their exit codes."""
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "PYTHONPATH": str(HERE.parents[1]), "OMP_NUM_THREADS": "1"}
        args = [sys.executable, str(HERE), json.dumps(assets), str(out), str(sigterm_at if rank == world - 1 else 0)]
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    codes = []
    for p in procs:
        try:
            text, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        codes.append(p.returncode)
        if p.returncode not in (0, EXIT_PREEMPTED):
            print(text[-3000:])
    return codes


def weights(run: Path) -> dict:
    return torch.load(run / "model" / "trainable.pt")


def rows(run: Path) -> list[dict]:
    drop = ("step_time", "tokens_per_s")
    return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def assets(tiny_encoder_dir, tiny_causal_dir, tiny_kb):
    return {"encoder": tiny_encoder_dir, "causal": tiny_causal_dir, "kb": str(tiny_kb)}


@pytest.fixture(scope="module")
def straight2(assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight2")
    assert launch(2, out, assets) == [0, 0]
    return out


def test_two_processes_equal_one_with_twice_the_accumulation(assets, straight2, tmp_path):
    assert launch(1, tmp_path, assets) == [0]
    a, b = weights(straight2), weights(tmp_path)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)  # the sum order of gloo differs
    ra, rb = rows(straight2), rows(tmp_path)
    assert len(ra) == len(rb) == 6
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-4, abs=1e-5), k


def test_sigterm_checkpoints_then_a_restart_resumes_exactly(assets, straight2, tmp_path):
    # rank 1 gets SIGTERM during step 3; both ranks stop after step 3 with a checkpoint of step 3
    assert launch(2, tmp_path, assets, sigterm_at=3) == [EXIT_PREEMPTED, EXIT_PREEMPTED]
    ck = torch.load(tmp_path / "checkpoint" / "last.pt", weights_only=False)
    assert ck["step"] == 3 and len(ck["state"]["cache"]) == 6  # the MIS cache holds the examples of both ranks
    assert not (tmp_path / "model" / "trainable.pt").exists()
    assert launch(2, tmp_path, assets) == [0, 0]
    a, b = weights(straight2), weights(tmp_path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows(straight2) == rows(tmp_path)


def _worker(assets: dict, out: str, sigterm_at: int) -> int:
    """One rank: JSA-RAG (MIS cache, seeded draws) on the tiny knowledge base, 3 epochs of 6 examples,
    batch 1, grad_accum 2 (1 per rank with 2 ranks): 9 steps, checkpoint every 2."""
    from jsarag.data.examples import load_examples
    from jsarag.evaluate import tiny_kb as tiny
    from jsarag.model import dense_index as di
    from jsarag.train import TRAINERS
    from jsarag.train.distributed import DataParallel
    from jsarag.train.preemption import Preempted

    dp = DataParallel.from_env("cpu")  # the rank first, as jsarag.train does: then the model, on dp.device
    torch.manual_seed(int(os.environ["RANK"]) + 7)  # ranks start from different LoRA weights: rank 0's are broadcast
    cfg = TRAINERS["jsa"].config_class.from_dict(dict(
        epochs=2, batch_size=1, grad_accum=2, lr_generator=1e-3, lr_retriever=1e-3, warmup_steps=1, k=3, tau=1.0, threads=1,
        checkpoint_every=2, lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, max_input_tokens=128, proposals=4))
    model = tiny.model_factory(assets["encoder"], assets["causal"], assets["kb"], shard=dp)("jsa", cfg)
    assert (model.index.lo, model.index.hi) == di.shard_rows(model.index.ntotal, dp.rank, dp.world)
    trainer = TRAINERS["jsa"](cfg, model, load_examples(Path(assets["kb"]) / "train.jsonl"), out, dp=dp)
    trainer.dp.per_micro_seed = True  # a 1-process reference draws as the ranks do
    if sigterm_at:
        step = trainer.scheduler.step

        def step_then_signal():  # a real SIGTERM, to this process, inside step `sigterm_at`
            step()
            if trainer.scheduler.last_epoch == sigterm_at:
                os.kill(os.getpid(), signal.SIGTERM)

        trainer.scheduler.step = step_then_signal
    try:
        trainer.train(progress=False)
    except Preempted as e:
        return e.code
    finally:
        dp.close()  # leave the group: gloo torn down at interpreter exit can abort the process (-6)
    return 0


if __name__ == "__main__":
    sys.exit(_worker(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
