"""Readers of the release format, their error messages, length-grouped batching, collation."""

from __future__ import annotations

import hashlib
import lzma
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import EMOTIONS, SPLIT_SIZES

from emotion_lab.data.batching import LengthGroupedBatches, TokenizedSplit
from emotion_lab.data.datamodule import TextDataModule
from emotion_lab.data.goemotions import (
    SPLIT_FILES,
    GoEmotions,
    open_release_file,
    packaged_release,
    read_checksums,
    read_hub,
    read_release_dir,
    read_release_tsv,
)
from emotion_lab.data.types import DataError


@pytest.fixture
def data_copy(goemotions_dir, tmp_path):
    """A writable copy of the fixture directory, to corrupt."""
    return shutil.copytree(goemotions_dir, tmp_path / "goemotions")


def replace_line(path, lineno: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[lineno - 1] = text + "\n"
    path.write_text("".join(lines), encoding="utf-8")


# ---------------------------------------------------------------- reading the fixture


def test_reads_the_release_directory(goemotions):
    data = read_release_dir(goemotions.dir)
    splits, names = data.splits, data.label_names
    assert names == EMOTIONS
    assert set(splits) == {"train", "val", "test"}
    for split, file in SPLIT_FILES.items():
        rows = goemotions.rows[file]
        got = splits[split]
        assert len(got.texts) == SPLIT_SIZES[file]
        assert got.texts == [text for text, _, _ in rows]  # quotes kept verbatim
        assert got.ids == [comment_id for _, _, comment_id in rows]
        assert got.labels.shape == (len(rows), len(EMOTIONS))
        assert got.labels.dtype == np.float32
        for i, (_, label_ids, _) in enumerate(rows):
            assert np.flatnonzero(got.labels[i]).tolist() == label_ids


def test_fixture_has_every_label_at_least_twice_in_every_split(goemotions_dir):
    splits = read_release_dir(goemotions_dir).splits
    for name, split in splits.items():
        assert split.labels.sum(axis=0).min() >= 2, name
    assert any('"' in t for t in splits["train"].texts)  # the quote case is exercised


def test_crlf_line_endings_read_the_same(goemotions_dir, data_copy):
    path = data_copy / "dev.tsv"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    crlf = read_release_tsv(path, len(EMOTIONS))
    plain = read_release_tsv(goemotions_dir / "dev.tsv", len(EMOTIONS))
    assert crlf.texts == plain.texts and crlf.ids == plain.ids
    np.testing.assert_array_equal(crlf.labels, plain.labels)


def test_head_keeps_the_first_examples(goemotions_dir):
    split = read_release_dir(goemotions_dir).splits["train"]
    head = split.head(7)
    assert head.texts == split.texts[:7] and head.ids == split.ids[:7]
    np.testing.assert_array_equal(head.labels, split.labels[:7])
    assert split.head(None) is split and split.head(10_000) is split


# ---------------------------------------------------------------- bad data


def test_nonexistent_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="data.dir") as err:
        read_release_dir(missing)
    assert str(missing) in str(err.value)


def test_missing_split_file(data_copy):
    (data_copy / "dev.tsv").unlink()
    with pytest.raises(DataError, match="split file not found") as err:
        read_release_dir(data_copy)
    assert str(data_copy / "dev.tsv") in str(err.value)


def test_missing_label_file(data_copy):
    (data_copy / "emotions.txt").unlink()
    with pytest.raises(DataError, match="emotions.txt"):
        read_release_dir(data_copy)


@pytest.mark.parametrize(("line", "message"), [
    ("just text\t3", "expected 3 tab-separated columns"),
    ("text\t3\tid\textra", "expected 3 tab-separated columns"),
    ("some text\t28\tabc", "label id 28 out of range"),
    ("some text\t2,-1\tabc", "label id -1 out of range"),
    ("   \t3\tabc", "empty text"),
    ("some text\t3,x\tabc", "comma-separated integers"),
    ("some text\t\tabc", "comma-separated integers"),
])
def test_bad_line_names_file_and_line(data_copy, line, message):
    path = data_copy / "train.tsv"
    replace_line(path, 5, line)
    with pytest.raises(DataError, match=message) as err:
        read_release_dir(data_copy)
    assert f"{path}:5:" in str(err.value)


def test_invalid_utf8_names_file_and_line(data_copy):
    path = data_copy / "test.tsv"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"caf\xe9\t1\tid\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(DataError, match="UTF-8") as err:
        read_release_dir(data_copy)
    assert f"{path}:3:" in str(err.value)


def test_empty_split_file(data_copy):
    (data_copy / "test.tsv").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_release_dir(data_copy)


def test_datamodule_with_bad_dir_raises_data_error(tmp_path):
    where = str(tmp_path / "nowhere")
    dm = TextDataModule(tokenizer=None, dir=where, source=GoEmotions(dir=where))
    with pytest.raises(DataError, match="data.dir"):
        dm.setup()


# ---------------------------------------------------------------- hub fallback


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    for var in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    import datasets
    import huggingface_hub

    # the libraries read the variables at import: patch them too in case they were imported
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


def test_hub_failure_points_at_data_dir(offline_hub):
    with pytest.raises(DataError, match="data.dir") as err:
        read_hub("emotion-lab-tests/no-such-dataset", "simplified")
    assert "emotion-lab-tests/no-such-dataset" in str(err.value)


def test_hub_is_tried_only_when_asked(offline_hub, monkeypatch):
    asked = []
    monkeypatch.setattr("emotion_lab.data.goemotions.read_hub",
                        lambda name, config: asked.append(name) or read_hub(name, config))
    source = GoEmotions(dir=None, hub_name="emotion-lab-tests/no-such-dataset")
    assert source.load().source.endswith("goemotions_release")  # the packaged copy
    assert asked == []
    dm = TextDataModule(tokenizer=None, source=GoEmotions(
        dir=None, from_hub=True, hub_name="emotion-lab-tests/no-such-dataset"))
    with pytest.raises(DataError, match="data.source.from_hub"):
        dm.setup()
    assert asked == ["emotion-lab-tests/no-such-dataset"]


# ---------------------------------------------------------------- the packaged release

RELEASE_README = Path(__file__).resolve().parents[2] / "shared" / "goemotions" / "README.md"
RELEASE_SIZES = {"train": 43_410, "val": 5_426, "test": 5_427}


def test_packaged_release_is_the_published_one():
    """The shipped files decompress to the release's sha256 (from its README, where the
    release lies beside this checkout; else from the package's own SHA256SUMS)."""
    directory = packaged_release()
    sums = read_checksums(directory)
    if RELEASE_README.is_file():
        published = dict((name, digest) for name, digest in re.findall(
            r"^- (\S+\.tsv)\s+([0-9a-f]{64})$", RELEASE_README.read_text(encoding="utf-8"),
            re.M))
        assert published.keys() == {"train.tsv", "dev.tsv", "test.tsv"}
        assert {name: sums[name] for name in published} == published
    for name, digest in sums.items():
        with open_release_file(directory / name) as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, name
    notice = (directory / "NOTICE.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in notice and "Demszky" in notice


def test_packaged_release_is_the_default_source():
    data = GoEmotions().load()
    assert {s: len(split) for s, split in data.splits.items()} == RELEASE_SIZES
    assert data.label_names == EMOTIONS


def test_a_damaged_packaged_file_stops_the_run(tmp_path):
    copy = tmp_path / "release"
    shutil.copytree(packaged_release(), copy)
    with lzma.open(copy / "dev.tsv.xz", "rb") as f:
        lines = f.read().splitlines(keepends=True)
    lines[7] = b"an edited text" + lines[7][lines[7].index(b"\t"):]
    with lzma.open(copy / "dev.tsv.xz", "wb") as f:
        f.write(b"".join(lines))
    with pytest.raises(DataError, match="does not match its sha256"):
        read_release_dir(copy)


# ---------------------------------------------------------------- batching


LENGTHS = torch.tensor(np.random.default_rng(0).integers(3, 60, size=103))


def flatten(batches):
    return [i for batch in batches for i in batch]


@pytest.mark.parametrize("shuffle", [True, False])
def test_batches_cover_every_index_exactly_once(shuffle):
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, shuffle=shuffle, seed=3)
    batches = list(sampler)
    assert sorted(flatten(batches)) == list(range(len(LENGTHS)))
    assert len(sampler) == len(batches) == 13  # ceil(103 / 8)
    assert all(1 <= len(b) <= 8 for b in batches)


def test_eval_batches_are_sorted_by_length():
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, shuffle=False)
    order = flatten(sampler)
    lengths = LENGTHS[order]
    assert torch.all(lengths[:-1] >= lengths[1:])
    assert list(sampler) == list(sampler)  # deterministic


def spread(batches) -> float:
    """Mean (max - min) length within a batch."""
    return float(np.mean([LENGTHS[b].max() - LENGTHS[b].min() for b in batches]))


def test_training_batches_have_near_uniform_length():
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, shuffle=True, seed=0)
    batches = list(sampler)
    # one group covers all 103 examples: each batch is a run of the length-sorted order
    sorted_lengths = torch.sort(LENGTHS, descending=True).values
    runs = {tuple(sorted_lengths[i:i + 8].tolist()) for i in range(0, len(LENGTHS), 8)}
    assert {tuple(sorted(LENGTHS[b].tolist(), reverse=True)) for b in batches} == runs
    random_batches = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(0))
    assert spread(batches) < spread(random_batches.split(8)) / 4


def test_training_batches_are_shuffled_per_epoch():
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, shuffle=True, seed=0, group_batches=2)
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert sorted(flatten(second)) == list(range(len(LENGTHS)))
    # small groups: every batch is still sorted by length inside
    for batch in second:
        lengths = LENGTHS[batch]
        assert torch.all(lengths[:-1] >= lengths[1:])


def rank_batches(monkeypatch, world: int, shuffle: bool, batch_size: int = 8):
    """Each rank's batches, as DDP's processes would draw them."""
    per_rank = []
    for rank in range(world):
        monkeypatch.setattr("emotion_lab.data.batching.world_and_rank", lambda r=rank: (world, r))
        per_rank.append(list(LengthGroupedBatches(LENGTHS, batch_size=batch_size,
                                                  shuffle=shuffle, seed=3)))
    return per_rank


@pytest.mark.parametrize("world", [2, 3])
def test_ddp_ranks_split_every_global_batch(monkeypatch, world):
    single = list(LengthGroupedBatches(LENGTHS, batch_size=8, shuffle=True, seed=3))
    ranks = rank_batches(monkeypatch, world, shuffle=True)
    assert len({len(r) for r in ranks}) == 1  # the ranks step together
    merged = [sorted(i for r in ranks for i in r[k]) for k in range(len(ranks[0]))]
    # the same global batches as one process: 103 = 12 x 8 + 7, and 7 >= world
    assert merged == [sorted(b) for b in single]
    assert all(len(b) >= 1 for r in ranks for b in r)


def test_a_last_batch_smaller_than_the_world_joins_the_one_before(monkeypatch):
    ranks = rank_batches(monkeypatch, 2, shuffle=True, batch_size=6)  # 103 = 17 x 6 + 1
    assert len(ranks[0]) == len(ranks[1]) == 17
    assert sorted(flatten(ranks[0]) + flatten(ranks[1])) == list(range(len(LENGTHS)))
    assert all(len(b) >= 1 for r in ranks for b in r)


def test_ddp_ranks_split_evaluation_without_overlap(monkeypatch):
    ranks = rank_batches(monkeypatch, 2, shuffle=False)
    assert sorted(flatten(ranks[0]) + flatten(ranks[1])) == list(range(len(LENGTHS)))
    assert abs(len(flatten(ranks[0])) - len(flatten(ranks[1]))) <= 1


def test_a_resumed_epoch_skips_the_batches_already_trained():
    sampler = LengthGroupedBatches(LENGTHS, batch_size=8, shuffle=True, seed=0)
    sampler.set_epoch(2)
    whole = list(sampler)
    sampler.skip(epoch=2, batches=5)
    assert list(sampler) == whole[5:]
    assert list(sampler) == whole[5:]  # Lightning may create the iterator twice
    assert len(sampler) == len(whole)  # Lightning counts the skipped ones as done
    sampler.set_epoch(3)
    assert len(list(sampler)) == len(whole)  # the next epoch is whole again


# ---------------------------------------------------------------- collation


def test_collate_pads_and_masks():
    labels = np.eye(3, 4, dtype=np.float32)
    data = TokenizedSplit([[1, 2, 3], [4], [5, 6]], labels, pad_id=9)
    assert len(data) == 3 and data[2] == 2
    batch = data.collate([2, 0, 1])
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 9], [1, 2, 3], [4, 9, 9]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]]))
    assert torch.equal(batch["labels"], torch.from_numpy(labels[[2, 0, 1]]))
    assert torch.equal(batch["index"], torch.tensor([2, 0, 1]))
    assert batch["input_ids"].dtype == torch.long


def test_collate_pads_only_to_the_longest_in_the_batch():
    data = TokenizedSplit([[1, 2, 3, 4, 5], [4], [5, 6]], np.zeros((3, 2), np.float32), pad_id=0)
    batch = data.collate([1, 2])
    assert batch["input_ids"].shape == (2, 2)
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 0], [1, 1]]))


def test_datamodule_tokenises_the_fixture(cfg):
    from omegaconf import OmegaConf

    from emotion_lab.models.backbones import load_tokenizer

    tokenizer = load_tokenizer(OmegaConf.to_container(cfg.backbone, resolve=True))
    dm = TextDataModule(tokenizer, source=GoEmotions(dir=cfg.data.dir), batch_size=16,
                        eval_batch_size=32, max_train_examples=50, max_eval_examples=20)
    dm.setup()
    assert dm.label_names == EMOTIONS
    assert [len(dm.tokenized[s]) for s in ("train", "val", "test")] == [50, 20, 20]
    np.testing.assert_allclose(dm.train_label_frequencies, dm.splits["train"].labels.mean(0))
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[0] == 20
    assert batch["input_ids"][:, 0].eq(tokenizer.cls_token_id).all()
    # padding positions are masked and hold the pad id
    assert batch["input_ids"][batch["attention_mask"] == 0].eq(tokenizer.pad_token_id).all()
    seen = flatten(b["index"].tolist() for b in dm.train_dataloader())
    assert sorted(seen) == list(range(50))


def test_cheapest_passes_matches_every_way_of_cutting_a_few_texts():
    """The dynamic programme finds the least padded tokens + fixed cost per pass: checked
    against all 2^(n-1) ways of cutting sorted lengths into passes of at most batch_size."""
    import itertools

    from emotion_lab.data.batching import cheapest_passes

    def cost(lengths, parts, pass_tokens):
        return sum(pass_tokens + (p.stop - p.start) * lengths[p.stop - 1] for p in parts)

    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 9))
        lengths = sorted(rng.integers(3, 60, n).tolist())
        batch_size, pass_tokens = int(rng.integers(1, 6)), int(rng.integers(0, 80))
        got = cheapest_passes(lengths, batch_size, pass_tokens)
        assert [i for p in got for i in range(p.start, p.stop)] == list(range(n))
        assert all(p.stop - p.start <= batch_size for p in got)
        best = min(
            cost(lengths, parts, pass_tokens)
            for cuts in itertools.product([False, True], repeat=n - 1)
            for parts in [[slice(a, b) for a, b in zip(
                [0] + [i + 1 for i, c in enumerate(cuts) if c],
                [i + 1 for i, c in enumerate(cuts) if c] + [n], strict=True)]]
            if all(p.stop - p.start <= batch_size for p in parts))
        assert cost(lengths, got, pass_tokens) == best
    # texts of one length: full passes; a huge fixed cost: as few passes as the size allows
    assert len(cheapest_passes([10] * 10, 4, 1)) == 3
    assert cheapest_passes([5, 6, 60, 61], 4, 0) == [slice(0, 1), slice(1, 2), slice(2, 3),
                                                     slice(3, 4)]
    assert cheapest_passes([5, 6, 60, 61], 4, 10_000) == [slice(0, 4)]
