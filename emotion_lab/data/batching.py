"""What the DataModule serves: a split tokenised once (or its cached features), and batches
of similar length so that dynamic padding pads little."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


class TokenizedSplit(Dataset):
    """A split tokenised once: token id tensors without padding, and multi-hot labels."""

    def __init__(self, input_ids: list[list[int]], labels: np.ndarray, pad_id: int):
        self.input_ids = [torch.tensor(ids, dtype=torch.long) for ids in input_ids]
        self.lengths = torch.tensor([len(ids) for ids in input_ids], dtype=torch.long)
        self.labels = torch.from_numpy(labels)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, index: int) -> int:
        return index  # collate() gathers and pads the whole batch at once

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        input_ids = torch.nn.utils.rnn.pad_sequence(
            [self.input_ids[i] for i in indices], batch_first=True, padding_value=self.pad_id)
        lengths = self.lengths[index]
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "labels": self.labels[index], "index": index}


class LengthGroupedBatches(Sampler[list[int]]):
    """Batches of similar length, so dynamic padding pads little.

    Training: shuffle, cut into groups of `group_batches` batches, sort each group by
    length, batch it, shuffle the batches. Evaluation: one global sort by length.

    Under DDP `batch_size` stays the global batch: each rank takes every world_size-th
    example of every training batch, so N processes step through the same batches as one
    process (the lightning-hydra-template convention: the learning rate and the schedule
    do not change with the number of GPUs). A last batch smaller than world_size joins the
    one before it, so no rank gets an empty batch and no example is dropped. Evaluation
    splits the length-sorted examples the same way; the ranks' predictions are gathered
    (EmotionModule's Collect, train.predict_split).

    `skip(epoch, batches)`: the first `batches` training batches of that epoch are already
    trained (a run resumed from a mid-epoch checkpoint: TextDataModule.load_state_dict).
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 group_batches: int = 50):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.group_batches, self.epoch = seed, group_batches, 0
        self._skip: tuple[int, int] | None = None
        # Lightning sets the epoch of a loader's `batch_sampler.sampler` (the attribute of
        # torch's BatchSampler), never of the batch sampler itself: without this every epoch
        # would draw the first epoch's batches again
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self._skip is not None and self._skip[0] != epoch:
            self._skip = None  # the resumed epoch is over

    def skip(self, epoch: int, batches: int) -> None:
        self._skip = (epoch, batches) if batches > 0 else None

    def _batches(self) -> list[list[int]]:
        world, rank = world_and_rank()
        if not self.shuffle:
            order = torch.argsort(self.lengths, descending=True, stable=True)
            return [b.tolist() for b in order[rank::world].split(self.batch_size)]
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=g)
        batches = []
        for group in perm.split(self.batch_size * self.group_batches):
            group = group[torch.argsort(self.lengths[group], descending=True, stable=True)]
            batches.extend(group.split(self.batch_size))
        batches = [batches[i] for i in torch.randperm(len(batches), generator=g)]
        if world > 1:
            small = [i for i, b in enumerate(batches) if len(b) < world]
            for i in reversed(small):  # at most one: the remainder of the last group
                if len(batches) > 1:
                    merged = batches.pop(i)
                    batches[i - 1] = torch.cat([batches[i - 1], merged])
        return [b[rank::world].tolist() for b in batches]

    def __iter__(self):
        batches = self._batches()
        if self._skip is not None and self._skip[0] == self.epoch and self.shuffle:
            batches = batches[self._skip[1]:]
        return iter(batches)

    def __len__(self) -> int:
        # the full epoch, also when resuming mid-epoch: Lightning counts the skipped
        # batches as done and expects the loader to yield the rest
        return len(self._batches())


def world_and_rank() -> tuple[int, int]:
    """(world size, rank) of the DDP process group; (1, 0) outside one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


class FeatureSplit(Dataset):
    """Pooled features and labels of one split; batches look like token batches minus tokens.

    Served through LengthGroupedBatches like tokens (TextDataModule._loader), with equal
    `lengths`: training batches are a plain shuffle of the seed and epoch, cut into batches
    (and resumed mid-epoch as token batches are); evaluation keeps the split's order."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels
        self.lengths = torch.zeros(len(features), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        return {"features": self.features[index], "labels": self.labels[index], "index": index}


class PromptedSplit(Dataset):
    """A split as prompts and target answers (token ids), for language models that write
    their labels. A batch serves both model kinds:

    input_ids, attention_mask, lm_labels   prompt + target, right-padded; lm_labels is the
                                           target with -100 on the prompt and the padding
                                           (a causal LM's loss falls on the answer only)
    prompt_ids, prompt_mask                the prompt alone, left-padded: where generation
                                           and label scoring continue (and T5's encoder input)
    target_ids                             the target alone, -100-padded (T5's decoder labels)
    """

    def __init__(self, prompt_ids: list[list[int]], target_ids: list[list[int]],
                 labels: np.ndarray, pad_id: int):
        self.prompt_ids = [torch.tensor(ids, dtype=torch.long) for ids in prompt_ids]
        self.target_ids = [torch.tensor(ids, dtype=torch.long) for ids in target_ids]
        self.lengths = torch.tensor([len(p) + len(t) for p, t in zip(prompt_ids, target_ids,
                                                                     strict=True)])
        self.labels = torch.from_numpy(labels)
        self.pad_id = pad_id

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, dtype=torch.long)
        prompts = [self.prompt_ids[i] for i in indices]
        targets = [self.target_ids[i] for i in indices]
        joined = [torch.cat(pair) for pair in zip(prompts, targets, strict=True)]
        input_ids = pad(joined, self.pad_id, "right")
        lm_labels = pad([torch.cat([torch.full_like(p, -100), t])
                         for p, t in zip(prompts, targets, strict=True)], -100, "right")
        prompt_ids = pad(prompts, self.pad_id, "left")
        return {"input_ids": input_ids, "attention_mask": mask_of(joined, input_ids.shape[1],
                                                                  "right"),
                "lm_labels": lm_labels, "prompt_ids": prompt_ids,
                "prompt_mask": mask_of(prompts, prompt_ids.shape[1], "left"),
                "target_ids": pad(targets, -100, "right"),
                "labels": self.labels[index], "index": index}


def pad(sequences: list[torch.Tensor], value: int, side: str) -> torch.Tensor:
    """One (batch, longest) tensor; `side` is where the padding goes."""
    if side == "left":  # pad_sequence's padding_side needs torch 2.6; flipping works on all
        flipped = [s.flip(0) for s in sequences]
        return pad(flipped, value, "right").flip(1)
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=value)


def mask_of(sequences: list[torch.Tensor], width: int, side: str) -> torch.Tensor:
    lengths = torch.tensor([len(s) for s in sequences])
    positions = torch.arange(width)
    if side == "left":
        return (positions >= width - lengths[:, None]).long()
    return (positions < lengths[:, None]).long()


def cheapest_passes(lengths: list[int], batch_size: int, pass_tokens: int) -> list[slice]:
    """Cut texts sorted by length into forward passes of at most `batch_size` so that padded
    tokens plus `pass_tokens` per pass (a pass's fixed cost, in tokens' worth of compute) add
    up least: an exact dynamic programme over the cut points, O(len · batch_size).

    Plain chunks of `batch_size` pad every text to the longest of its chunk; in few texts of
    mixed length (the service's batches, a short predict call) that padding is most of the
    work, while one pass per text pays the fixed cost each time."""
    n = len(lengths)
    best = [0.0] + [float("inf")] * n  # best[j]: least cost of the first j texts
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = lengths[j - 1]  # sorted: the last text of a pass is its longest
        for i in range(max(0, j - batch_size), j):
            cost = best[i] + pass_tokens + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], n
    while j > 0:
        bounds.append(slice(cut[j], j))
        j = cut[j]
    return bounds[::-1]
