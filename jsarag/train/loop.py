"""The training loop shared by the three methods: optimizer, schedule, accumulation, clipping,
checkpoint/resume, metrics log. A method only defines `compute_loss`."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from jsarag import InputError
from jsarag.data.targets import visit
from jsarag.io import fsync_path, save_torch, write_json
from jsarag.layout import RunFiles
from jsarag.model.latent import LatentModel, Scores
from jsarag.phases import phase
from jsarag.train.checkpoint import CheckpointFiles
from jsarag.train.config import TrainConfig
from jsarag.train.distributed import DataParallel, rank_threads
from jsarag.train.preemption import Preempted, StopFlag
from jsarag.train.validation import Validator

log = logging.getLogger("jsarag.train")


def lr_lambda(warmup: int, total: int, min_ratio: float, schedule: str = "cosine"):
    """Linear warm-up, then cosine decay to min_ratio of the peak at the last step ("cosine") or,
    as in the authors' code, at half of the steps and flat after ("authors")."""
    end = max(warmup + 1, total // 2) if schedule == "authors" else total

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        prog = min(1.0, (step - warmup) / max(1, end - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))
    return f


def grad_norm(params) -> float:
    sq = [p.grad.detach().pow(2).sum() for p in params if p.grad is not None]
    return float(torch.stack(sq).sum().sqrt()) if sq else 0.0


class Trainer:
    method = "base"
    config_class = TrainConfig
    uses_posterior = False

    def __init__(self, cfg: TrainConfig, model: LatentModel, examples: list[dict], out_dir: str | Path,
                 valid_examples: list[dict] | None = None, dp: DataParallel | None = None):
        """`dp`: this process's rank, bound before the model was built (DataParallel.from_env); one
        process when omitted."""
        self.cfg, self.model, self.examples = cfg, model, examples
        self.dp = dp if dp is not None else DataParallel.from_env(cfg.device)
        if self.dp.world > 1 and model.device != self.dp.device:
            raise InputError(f"rank {self.dp.rank}: the model was built on {model.device}, the rank is bound to {self.dp.device}: "
                             "bind the rank (DataParallel.from_env) before building the model")
        self.validator = Validator(valid_examples, cfg.valid_every, cfg.valid_k, cfg.keep_best)
        self.out = Path(out_dir)
        self.files = RunFiles(str(out_dir))
        self.checkpoints = CheckpointFiles(self.files.checkpoint_dir)  # last.pt and previous.pt (checkpoint.py)
        self.sampler = torch.Generator().manual_seed(cfg.seed + 1)  # MIS / sampled-VRAG draws
        if not cfg.train_prior:
            model.prior.requires_grad_(False)
        groups = []
        comps = model.components()
        if comps["generator"]:
            groups.append({"params": comps["generator"], "lr": cfg.lr_generator, "name": "generator"})
        ret = comps["prior"] + comps.get("posterior", [])
        if ret:
            groups.append({"params": ret, "lr": cfg.lr_retriever, "name": "retriever"})
        self.optimizer = torch.optim.AdamW(groups, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
        per_epoch = math.ceil(len(examples) / cfg.batch_size / cfg.grad_accum)
        self.total_steps = per_epoch * cfg.epochs if cfg.max_steps <= 0 else min(cfg.max_steps, per_epoch * cfg.epochs)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.warmup_steps, self.total_steps, cfg.min_lr_ratio,
                                                                                       cfg.schedule))
        self.step = 0  # optimizer steps done
        self.state: dict = {}  # method state saved in checkpoints (the MIS cache)
        self.log_rows: list[dict] = []  # metrics of the steps done, also kept in checkpoints
        self.net = self.dp.wrap(model)  # DDP over the trainable parameters under torchrun (distributed.py)

    # -- to override ------------------------------------------------------------------------
    def loss_from_scores(self, batch: list[dict], s: Scores) -> tuple[torch.Tensor, dict]:
        """The method's loss (a scalar to minimize) and its logged terms."""
        raise NotImplementedError

    def extra_rows(self, batch: list[dict]) -> list[list[int]] | None:
        """Passages that must join the candidate set (JSA: the cached MIS state)."""
        return None

    def compute_loss(self, batch: list[dict]) -> tuple[torch.Tensor, dict, Scores]:
        s = self.net(batch, k=self.cfg.k, use_posterior=self.uses_posterior, extra_rows=self.extra_rows(batch), exact=self.cfg.exact)
        loss, logs = self.loss_from_scores(batch, s)
        logs = {"loss": loss.item(), **logs, "candidates": s.mask.sum(-1).float().mean().item()}
        return loss, logs, s

    def train_mode(self) -> None:
        """Train mode; the retriever towers stay in eval mode (no dropout) unless retriever_dropout."""
        self.model.train()
        if not self.cfg.retriever_dropout:
            for enc in (self.model.prior, self.model.posterior):
                if enc is not None:
                    enc.eval()

    # -- data order -------------------------------------------------------------------------
    def batches(self, start_micro: int):
        """Micro-batches from a seeded permutation per epoch; resumes at micro-batch `start_micro`."""
        bs = self.cfg.batch_size
        per_epoch = math.ceil(len(self.examples) / bs)
        total = self.total_steps * self.cfg.grad_accum
        for micro in range(start_micro, total):
            epoch, i = divmod(micro, per_epoch)
            perm = np.random.default_rng(self.cfg.seed + epoch).permutation(len(self.examples))
            yield epoch, [visit(self.examples[j], self.cfg.seed, epoch) for j in perm[i * bs:(i + 1) * bs]]  # target rule

    # -- checkpoints ------------------------------------------------------------------------
    def trainable_state(self) -> dict:
        return {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: method, config and training examples."""
        import hashlib

        key = json.dumps({"method": self.method, "config": self.cfg.to_dict(), "examples": [e["id"] for e in self.examples]},
                         sort_keys=True)
        return hashlib.sha256(key.encode()).hexdigest()

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.files.checkpoint)

    def save_checkpoint(self) -> None:
        """Rank 0 writes the checkpoint (checkpoint.py: durable, the last one kept as previous.pt);
        the others wait for it. Each rank's index-refresh rows are on disk before a checkpoint names them."""
        index = self.model.index
        if index.refreshed_at is not None:
            fsync_path(index.refresh_file(self.checkpoint_path.parent, index.refreshed_at))
            self.dp.barrier()
        ck = {
            "fingerprint": self.fingerprint(), "step": self.step, "model": self.trainable_state(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "state": self.state, "log": self.log_rows,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                    "sampler": self.sampler.get_state()},
            "best": self.validator.best, "index_refresh_step": index.refreshed_at,
        } if self.dp.is_main else {"index_refresh_step": index.refreshed_at}
        self.checkpoints.write(ck, is_writer=self.dp.is_main)
        self.dp.barrier()
        self.drop_stale_refreshes()

    def drop_stale_refreshes(self) -> None:
        """Each rank removes its index-refresh files that neither checkpoint on disk names."""
        index, folder = self.model.index, self.checkpoint_path.parent
        if index.refreshed_at is None:
            return
        keep = {index.refresh_file(folder, s) for s in self.checkpoints.kept_refresh_steps()}
        mine = index.refresh_file(folder, index.refreshed_at).name.replace(f"step{index.refreshed_at}.", "step*.")
        for f in folder.glob(mine):
            if f not in keep:
                f.unlink()

    def drop_checkpoint(self) -> None:
        """A finished run keeps its model, not its checkpoint: the checkpoint exists to resume a
        killed run, and a forced rerun (`snakemake --forcerun train`) must start from step 0."""
        shutil.rmtree(self.checkpoint_path.parent, ignore_errors=True)

    def load_checkpoint(self) -> bool:
        """Resume from last.pt, or from previous.pt when last.pt cannot be read (checkpoint.py)."""
        if self.dp.is_main:
            self.checkpoints.remove_stale_temps()
        # on the host: the RNG states must be CPU tensors; load_state_dict copies each tensor to its parameter's device
        found = self.checkpoints.load(self.dp)
        if found is None:
            return False
        ck, path = found
        self.resumed_from = path
        if ck.get("fingerprint") != self.fingerprint():
            log.warning("%s was written with another config or data: starting from step 0", path)
            self.dp.barrier()  # every rank has read it
            if self.dp.is_main:
                self.checkpoints.discard()
            self.checkpoints.refresh_steps = {}
            return False
        self.model.load_state_dict(ck["model"], strict=False)
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.state = ck["state"]
        self.log_rows = ck["log"]
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        self.sampler.set_state(ck["rng"]["sampler"])
        if ck.get("index_refresh_step") is not None:  # each rank reloads its own re-encoded rows
            self.model.index.load_refresh(path.parent, ck["index_refresh_step"])
        self.validator.best = ck.get("best", {})
        self.step = ck["step"]
        return True

    def save_model(self) -> None:
        if not self.dp.is_main:
            return
        save_torch(self.trainable_state(), self.files.weights)  # byte-reproducible: no temp name inside
        write_json(self.files.model_config, {"method": self.method, **self.cfg.to_dict()})

    # -- one optimizer step (train, and the interleaved step-cost measurement) ---------------
    def backward(self, batch: list[dict], scale: float, sync: bool = True) -> tuple[dict, int]:
        """One micro-batch's loss and backward, its loss scaled by `scale` (DDP all-reduces only when
        `sync`); its logged terms and target tokens."""
        with self.dp.no_sync(self.net, sync=sync):
            loss, logs, scores = self.compute_loss(batch)
            with phase("backward"):
                (loss * scale).backward()
        return logs, scores.n_tokens

    def update(self, comps: dict | None = None) -> tuple[dict, float]:
        """The optimizer step after a step's backwards: gradient norms, clipping, AdamW, the schedule.
        Returns the norms and the learning rate the step used."""
        comps = comps if comps is not None else self.model.components()
        with phase("optimizer"):
            norms = {f"grad_norm/{n}": grad_norm(ps) for n, ps in comps.items()}
            for ps in (comps.values() if self.cfg.clip_per_component else [[p for c in comps.values() for p in c]]):
                torch.nn.utils.clip_grad_norm_(ps, self.cfg.clip)
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return norms, lr

    # -- loop -------------------------------------------------------------------------------
    def train(self, progress: bool = True, stop_after: int | None = None) -> dict | None:
        """Train to the end, resuming from the last checkpoint if there is one. `stop_after` ends the
        process abruptly after that step, without a final checkpoint (tests use it as a kill)."""
        torch.set_num_threads(rank_threads(self.cfg.threads, self.dp.world))
        resumed = self.load_checkpoint()
        if resumed:
            logging.getLogger("jsarag.train").info("resumed from %s at step %d of %d", self.resumed_from, self.step, self.total_steps)
        dp, stop = self.dp, StopFlag()
        log_path = Path(self.files.train_log) if dp.is_main else Path(os.devnull)  # rank 0 writes the log
        self.out.mkdir(parents=True, exist_ok=True)
        # the log restarts from the checkpoint's rows: steps after it are redone (a workflow
        # manager may also have deleted the log of the killed job)
        if self.step == 0 and self.validator.active:  # the starting point of the validation curves
            self.log_rows = [self.validator.run(0, self.model, self.trainable_state)]
        if dp.is_main:
            log_path.write_text("".join(json.dumps(r) + "\n" for r in self.log_rows))
        comps = self.model.components()
        local_accum, seen = dp.local_accum(self.cfg.grad_accum), []
        scale = dp.loss_scale(self.cfg.grad_accum)
        self.train_mode()
        t_start = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {self.method}", mininterval=2, disable=not progress)
        acc, logs_acc, tokens, t0 = 0, {}, 0, time.perf_counter()
        with open(log_path, "a") as log:
            for micro, (epoch, batch) in enumerate(self.batches(self.step * self.cfg.grad_accum), self.step * self.cfg.grad_accum):
                if not dp.mine(micro, self.cfg.grad_accum):
                    continue
                dp.seed_sampler(self.sampler, self.cfg.seed, micro)
                seen += [ex["id"] for ex in batch]
                logs, n_tokens = self.backward(batch, scale, sync=acc + 1 == local_accum)  # DDP all-reduces in the step's last
                tokens += n_tokens
                for key, v in logs.items():
                    logs_acc[key] = logs_acc.get(key, 0.0) + v / self.cfg.grad_accum
                acc += 1
                if acc < local_accum:
                    continue
                with phase("sync"):
                    logs_acc, tokens = dp.reduce_logs(logs_acc, tokens)
                    dp.sync_state(self.state, seen)
                seen = []
                norms, lr = self.update(comps)
                self.step += 1
                dt = time.perf_counter() - t0
                row = {"step": self.step, "epoch": epoch, "lr": lr, **logs_acc, **norms, "step_time": dt, "tokens_per_s": tokens / dt}
                if self.validator.due(self.step, self.total_steps):
                    row.update(self.validator.run(self.step, self.model, self.trainable_state))
                self.log_rows.append(row)
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{logs_acc.get('loss', float('nan')):.3f}")
                acc, logs_acc, tokens = 0, {}, 0
                if self.cfg.index_refresh and self.step % self.cfg.index_refresh == 0:  # each rank its own rows, to its own file
                    self.model.index.refresh(self.model.prior, self.model.store, self.step)
                    self.model.index.save_refresh(self.checkpoint_path.parent)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.total_steps:
                    self.save_checkpoint()
                if stop_after is not None and self.step >= stop_after:
                    bar.close()
                    stop.close()
                    return None
                with phase("sync"):
                    stopping = stop.any_rank(dp)
                if stopping:  # SIGTERM / SIGUSR1: checkpoint, then exit for a retry (preemption.py)
                    if self.step % self.cfg.checkpoint_every and self.step != self.total_steps:
                        self.save_checkpoint()
                    stop.close()
                    raise Preempted(self.step, stop.signum)
                t0 = time.perf_counter()
        bar.close()
        stop.close()
        best_step = self.validator.restore_best(self.model)
        self.save_model()
        rows = [r for r in self.log_rows if "step_time" in r]  # not the step-0 validation row
        secs = sum(r["step_time"] for r in rows)
        summary = {
            "method": self.method, "steps": self.step, "seconds": secs,
            "seconds_per_100_steps": 100 * secs / max(1, len(rows)),
            "tokens_per_s": float(np.mean([r["tokens_per_s"] for r in rows])) if rows else 0.0,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "wall_seconds_this_run": time.perf_counter() - t_start, "resumed": resumed,
        }
        if best_step is not None:
            summary["best_step"], summary["best_" + self.cfg.keep_best] = best_step, self.validator.best["value"]
        return summary
