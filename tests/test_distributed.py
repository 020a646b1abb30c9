"""Distributed training on 2 CPU processes (gloo): DDP ends where one process ends on the same
data (validation predictions gathered from both ranks before thresholds are fitted, the test
split predicted in full, the run written once); ranks with unequal shares of an odd batch
step as one process on the whole batch; the training clock sums the ranks' counts once per
epoch, on the strategy's device; DDP inside a multirun is refused with a message that says
what to do; the FSDP config builds Lightning's FSDP strategy."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import EMOTIONS, compose_config
from hydra.utils import instantiate
from test_cli import run_cli

from emotion_lab.data.batching import PromptedSplit
from emotion_lab.inference import predict_probs
from emotion_lab.models.saving import load_model
from emotion_lab.testing.tiny_backbones import build_tiny_backbone
from emotion_lab.training.callbacks import TrainingClock

# no dropout: one process and two draw different masks; everything else must agree
SAME_DATA = ("backbone=tiny", "+backbone.random_init.hidden_dropout_prob=0.0",
             "+backbone.random_init.attention_probs_dropout_prob=0.0",
             "trainer.accelerator=cpu", "trainer.precision=32-true", "threads=1",
             "trainer.max_epochs=2", "data.batch_size=16", "data.eval_batch_size=16",
             "logger=csv", "callbacks.progress_bar=null")


@pytest.mark.slow
def test_ddp_on_two_processes_ends_where_one_process_ends(goemotions, tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    for run_dir, extra in ((single, ()), (ddp, ("trainer=ddp", "trainer.devices=2"))):
        result = run_cli(*SAME_DATA, *extra, f"data.dir={goemotions.dir}",
                         f"hydra.run.dir={run_dir}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((single / "metrics.json").read_text(encoding="utf-8"))
    two = json.loads((ddp / "metrics.json").read_text(encoding="utf-8"))
    assert two["global_steps"] == one["global_steps"] == 20  # the same global batches
    assert two["train/samples_seen"] == one["train/samples_seen"] == 2 * 160
    for key, value in one.items():
        if isinstance(value, float) and not key.startswith("time/"):
            assert two[key] == pytest.approx(value, abs=2e-4), key
    np.testing.assert_allclose(np.load(ddp / "val_probs.npy"), np.load(single / "val_probs.npy"),
                               atol=1e-4)
    test_probs = np.load(ddp / "test_probs.npy")
    assert test_probs.shape == (len(goemotions.rows["test.tsv"]), 28)  # both ranks' shares
    assert json.loads((ddp / "thresholds.json").read_text(encoding="utf-8")) == \
        json.loads((single / "thresholds.json").read_text(encoding="utf-8"))

    # written once: one history, as long as one process's; rank 1 logs to its own file
    def history(run_dir):
        with (run_dir / "csv" / "metrics.csv").open(newline="", encoding="utf-8") as f:
            return [(r["step"], r["epoch"]) for r in csv.DictReader(f)]
    assert history(ddp) == history(single)
    assert (ddp / "train_ddp_process_1.log").is_file()
    model, tokenizer, _ = load_model(ddp / "model")
    texts = [text for text, _, _ in goemotions.rows["test.tsv"]]
    np.testing.assert_allclose(predict_probs(model, tokenizer, texts), test_probs, atol=1e-5)


def odd_batch_cases(tmp_path) -> dict:
    """A classifier and two language models (decoder, encoder-decoder), each with a batch
    of 5: two ranks get 3 and 2 examples, and answers of different lengths."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([9, 4, 12, 7, 5])
    labels = (torch.rand(5, len(EMOTIONS), generator=g) < 0.2).float()
    classifier = instantiate(compose_config("backbone=tiny").model, label_names=EMOTIONS)
    cases = {"classifier": (classifier, {
        "input_ids": torch.randint(1000, 2000, (5, 12), generator=g),
        "attention_mask": (torch.arange(12) < lengths[:, None]).long(), "labels": labels})}
    for family, name in (("gpt2", "gpt2"), ("t5", "t5_small")):
        folder = build_tiny_backbone(family, tmp_path / family)
        cfg = compose_config(f"backbone={name}", f"backbone.model={folder}", "model=generative")
        module = instantiate(cfg.model, label_names=EMOTIONS[:4])
        prompts = [torch.randint(10, 100, (int(n),), generator=g).tolist() for n in lengths]
        answers = [torch.randint(10, 100, (n,), generator=g).tolist() for n in (1, 6, 2, 5, 3)]
        split = PromptedSplit(prompts, answers, labels[:, :4].numpy(), pad_id=0)
        cases[family] = (module, split.collate(list(range(5))))
    for module, _ in cases.values():
        module.eval()  # no dropout: the ranks and the one process must draw nothing
    return cases


def rank_gradients(rank: int, world: int, init_file: str, cases: dict, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        for name, (module, batch) in cases.items():
            share = {k: v[rank::world].contiguous() for k, v in batch.items()}  # batching.py
            module.training_step(share, 0).backward()
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            for grad in grads:  # what DDP does with them: the mean over the ranks
                dist.all_reduce(grad)
                grad /= world
            if rank == 0:
                torch.save(grads, f"{out}/{name}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log()`")  # no Trainer
def test_ranks_with_unequal_shares_of_an_odd_batch_step_as_one_process(tmp_path):
    cases = odd_batch_cases(tmp_path)
    # fork: the children inherit the modules and the imports (spawn would import them again)
    mp.start_processes(rank_gradients, args=(2, str(tmp_path / "rendezvous"), cases,
                                             str(tmp_path)), nprocs=2, start_method="fork")
    for name, (module, batch) in cases.items():
        module.training_step(batch, 0).backward()  # one process, the whole batch
        expected = [p.grad for p in module.parameters() if p.grad is not None]
        got = torch.load(tmp_path / f"{name}.pt")
        assert len(got) == len(expected) > 0, name
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6, msg=name)


class SummingStrategy:
    """A 2-rank strategy that checks where reduced tensors live; the other rank saw `other`
    samples whenever the counts are summed."""

    def __init__(self, device: torch.device, other: int):
        self.root_device, self.other, self.reduced = device, other, []

    def reduce(self, tensor, reduce_op=None):
        assert tensor.device == self.root_device  # NCCL refuses CPU tensors
        assert reduce_op == "sum"
        self.reduced.append(tensor)
        return torch.tensor(self.samples_here + self.other)


def test_the_training_clock_sums_the_ranks_once_per_epoch_on_the_device():
    # a meta device stands in for a GPU: a tensor on the CPU fails the strategy's check
    strategy = SummingStrategy(torch.device("meta"), other=4)
    trainer = SimpleNamespace(world_size=2, strategy=strategy)
    module = SimpleNamespace(device=strategy.root_device)
    clock = TrainingClock()
    clock.setup(trainer, module, "fit")
    for step in range(3):
        clock.on_train_batch_start(trainer, module, None, step)
        clock.on_train_batch_end(trainer, module, None, {"labels": [0] * 3}, step)
    assert strategy.reduced == []  # no collective per step
    strategy.samples_here = 9
    clock.on_train_epoch_end(trainer, module)
    assert len(strategy.reduced) == 1 and clock.samples == 9 + 4
    # a checkpoint saved mid-epoch holds the global count so far
    clock.on_train_batch_start(trainer, module, None, 0)
    clock.on_train_batch_end(trainer, module, None, {"labels": [0] * 2}, 0)
    strategy.samples_here, strategy.other = 2, 1
    assert clock.state_dict()["samples"] == 13 + 3 and len(strategy.reduced) == 2
    clock.teardown(trainer, module, "fit")
    assert clock.state_dict()["samples"] == 16 and len(strategy.reduced) == 2  # after fit
    assert clock.seconds > 0


@pytest.mark.slow
def test_ddp_inside_a_multirun_is_refused_with_what_to_do(goemotions_dir, tmp_path):
    result = run_cli("-m", "seed=1,2", "trainer=ddp", "trainer.accelerator=cpu",
                     "trainer.devices=2", "backbone=tiny", f"data.dir={goemotions_dir}",
                     "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "cannot run inside a multirun" in output
    assert "hydra/launcher=slurm" in output  # what to do instead
    assert "Traceback" not in output
    assert not list((tmp_path / "sweep").glob("*/metrics.json"))


def test_the_fsdp_config_builds_lightnings_fsdp_strategy():
    """Lightning runs FSDP on GPUs only, so here the config is checked, not trained."""
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import FSDPStrategy

    cfg = compose_config("trainer=fsdp", "backbone=tiny", "paths.output_dir=/x")
    assert cfg.trainer.precision == "bf16-mixed"
    strategy = instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, FSDPStrategy)
    assert strategy.kwargs["use_orig_params"] is True  # LoRA: frozen and trained weights mix
    assert strategy.kwargs["auto_wrap_policy"].keywords["min_num_params"] == 1_000_000
    ddp = instantiate(compose_config("trainer=ddp", "paths.output_dir=/x").trainer.strategy)
    assert ddp._ddp_kwargs["broadcast_buffers"] is False
