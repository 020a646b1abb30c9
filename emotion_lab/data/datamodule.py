"""The DataModule: a source (or a directory written by `emotion_lab.prepare`), cleaned, mapped
to the chosen taxonomy, tokenised once per run, served in length-grouped batches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from emotion_lab.data.batching import (
    FeatureSplit,
    LengthGroupedBatches,
    PromptedSplit,
    TokenizedSplit,
)
from emotion_lab.data.cleaning import clean
from emotion_lab.data.distill import distill_report, distilled_targets, teacher_probabilities
from emotion_lab.data.meaning import Embed
from emotion_lab.data.prepared import is_prepared, read_prepared
from emotion_lab.data.prompts import PromptFormat, truncate_texts
from emotion_lab.data.taxonomy import apply_taxonomy
from emotion_lab.data.types import DataError, LabelledData, Problem, Split, label_frequencies

log = logging.getLogger(__name__)


def check_count(key: str, value: Any, minimum: int = 1, optional: bool = False) -> None:
    """A DataError naming `key` unless `value` is a whole number >= minimum (or None where
    `optional`): a typo such as data.batch_size=abc stops here, not deep in a DataLoader."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DataError(f"{key}={value}: expected a whole number of at least {minimum}"
                        + (" (or null for no limit)" if optional else "") + ".")


class TextDataModule(L.LightningDataModule):
    """Labelled texts from a source (or a directory written by `emotion_lab.prepare`), cleaned,
    mapped to the chosen taxonomy, tokenised once per run.

    `dir` holding train.parquet (a prepared directory) wins over `source`. `prompt` (a
    generative model's prompt config, data/prompts.py): serve prompts and target answers
    instead of classifier inputs. `embed` (texts -> embeddings): what cleaning by meaning
    (data.clean.label_issues / outliers) needs; the prepare face passes the backbone's.
    `distill` ({teachers, weight}): train on labels mixed with teacher runs' probabilities
    (data/distill.py); validation and test keep their labels.
    """

    def __init__(self, tokenizer, source: Any = None, dir: str | None = None,
                 taxonomy: str = "original", eval_taxonomies: list[str] | None = None,
                 clean: dict[str, Any] | None = None, max_length: int = 128,
                 batch_size: int = 32, eval_batch_size: int = 128, num_workers: int = 0,
                 max_train_examples: int | None = None, max_eval_examples: int | None = None,
                 seed: int = 0, prompt: dict[str, Any] | None = None,
                 embed: Embed | None = None, distill: dict[str, Any] | None = None):
        super().__init__()
        check_count("data.max_length", max_length)
        check_count("data.batch_size", batch_size)
        check_count("data.eval_batch_size", eval_batch_size)
        check_count("data.num_workers", num_workers, minimum=0)
        check_count("data.max_train_examples", max_train_examples, optional=True)
        check_count("data.max_eval_examples", max_eval_examples, optional=True)
        self.prompt = None if prompt is None else dict(prompt)
        self.format: PromptFormat | None = None
        self.tokenizer, self.source, self.dir = tokenizer, source, dir
        self.taxonomy, self.eval_taxonomies = taxonomy, list(eval_taxonomies or [])
        self.clean = {k: dict(v) if isinstance(v, Mapping) else v
                      for k, v in dict(clean or {}).items()}
        self.embed = embed  # texts -> embeddings, for cleaning by meaning (the prepare face's)
        self.distill = dict(distill or {})
        self.review: list[dict[str, Any]] = []  # the training examples that cleaning flagged
        self.max_length = max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.seed = num_workers, seed
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches): load_state_dict
        self._train_batches: LengthGroupedBatches | None = None  # read by state_dict
        self.caps = {"train": max_train_examples, "val": max_eval_examples,
                     "test": max_eval_examples}
        self.data: LabelledData | None = None
        self.splits: dict[str, Split] = {}
        self.tokenized: dict[str, TokenizedSplit | PromptedSplit] = {}
        self.features: dict[str, FeatureSplit] = {}  # served instead of tokens when set
        self.label_names: list[str] = []
        self.report: dict[str, Any] = {}

    def load(self) -> LabelledData:
        """Read, clean and regroup the data (no tokenizer needed); fills `self.report`."""
        if self.dir is not None and is_prepared(self.dir):
            data = read_prepared(self.dir)
        elif self.dir is not None and getattr(self.source, "dir", None) != self.dir:
            raise DataError(f"data.dir={self.dir}: not a prepared directory (no train.parquet). "
                            f"Write one with python -m emotion_lab.prepare, or leave data.dir "
                            f"unset and name your files in data.source.")
        elif self.source is not None:
            data = self.source.load()
        else:
            raise DataError(f"data.dir={self.dir} is not a prepared directory and the data "
                            f"config names no source.")
        self.review = []
        data, cleaning = clean(data, self.clean, seed=self.seed, embed=self.embed,
                               review=self.review)
        data = apply_taxonomy(data, self.taxonomy)
        self.report = {"source": data.source, "taxonomy": self.taxonomy,
                       "problem_type": data.problem_type, "labels": data.label_names,
                       **({"source_report": data.report} if data.report else {}),
                       "rules": self.clean, "splits": cleaning}
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized:  # tokenise once per run, whatever stage asks
            return
        self.data = self.load()
        self.label_names = self.data.label_names
        self.splits = {name: split.head(self.caps[name])
                       for name, split in self.data.splits.items()}
        pad_id = self.tokenizer.pad_token_id
        if self.prompt is not None:
            self.format = PromptFormat.from_config(self.prompt, self.label_names)
        targets = {name: split.labels for name, split in self.splits.items()}
        if self.distill.get("teachers") is not None:
            targets["train"] = self.distilled(self.splits["train"])
        for name, split in self.splits.items():
            if self.format is not None:
                self.tokenized[name] = self.prompted(name, split)
                continue
            enc = self.tokenizer(split.texts, truncation=True, max_length=self.max_length)
            self.tokenized[name] = TokenizedSplit(enc["input_ids"], targets[name], pad_id)
        lengths = torch.cat([t.lengths for t in self.tokenized.values()]).float()
        log.info("data: %s examples, %d labels; %.1f tokens on average, %d truncated to %d",
                 " / ".join(f"{name} {len(split):,}" for name, split in self.splits.items()),
                 len(self.label_names), lengths.mean(),
                 int((lengths >= self.max_length).sum()), self.max_length)

    def distilled(self, split: Split) -> np.ndarray:
        """The training split's labels mixed with the teachers' probabilities."""
        if self.format is not None or self.problem.single_label:
            raise DataError("data.distill.teachers is set, but distillation mixes teacher "
                            "probabilities into multi-label targets for a classifier head: "
                            "this run is generative or single-label. Set "
                            "data.distill.teachers=null.")
        teachers = self.distill["teachers"]
        teachers = [teachers] if isinstance(teachers, str) else list(teachers)
        probs = teacher_probabilities(teachers, split.texts, self.label_names)
        self.report["distill"] = distill_report(self.distill | {"teachers": teachers},
                                                len(split))
        log.info("data: training targets %.2f x labels + %.2f x the mean of %d teacher(s)",
                 1 - self.distill["weight"], self.distill["weight"], len(teachers))
        return distilled_targets(split.labels, probs, self.distill["weight"])

    def prompted(self, name: str, split: Split) -> PromptedSplit:
        """Prompt and target token ids; the target ends with the end-of-text token, so that a
        trained model stops after its answer."""
        fmt, tokenizer = self.format, self.tokenizer
        rationales = split.rationales or [""] * len(split)
        if fmt.rationale != "none" and name == "train":
            if split.rationales is None:
                raise DataError(
                    f"model.prompt.rationale={fmt.rationale}, but the training data has no "
                    f"rationale column. Add one with python -m emotion_lab.rationales "
                    f"data_dir=<prepared dir>, or set model.prompt.rationale=none.")
            missing = sum(not r.strip() for r in rationales)
            if missing:
                log.info("rationales: %d of %d training examples have none (rejected or not "
                         "generated); they teach the labels alone", missing, len(split))
        names = [[self.label_names[j] for j in np.flatnonzero(row)] for row in split.labels]
        prompts = [fmt.prompt(t) for t in truncate_texts(tokenizer, split.texts,
                                                          self.max_length)]
        targets = [fmt.target(n, r) for n, r in zip(names, rationales, strict=True)]
        if tokenizer.eos_token_id is None:
            raise DataError(f"{type(tokenizer).__name__} has no end-of-text token, so a "
                            f"model could not learn where its answer ends: model=generative "
                            f"needs a language-model backbone (backbone=smollm2_135m, "
                            f"qwen2_5_0_5b, llama3_2_1b, gpt2 or t5_small).")
        target_ids = [ids[:fmt.max_target_length - 1] + [tokenizer.eos_token_id] for ids in
                      tokenizer(targets, add_special_tokens=False)["input_ids"]]
        return PromptedSplit(tokenizer(prompts)["input_ids"], target_ids, split.labels,
                             tokenizer.pad_token_id)

    @property
    def problem_type(self) -> str:
        return self.problem.name

    @property
    def problem(self) -> Problem:
        return self.data.problem if self.data else Problem()

    @property
    def train_label_frequencies(self) -> np.ndarray:
        return label_frequencies(self.splits["train"].labels)

    def use_features(self, features: dict[str, torch.Tensor],
                     batch_size: int | None = None) -> None:
        """Serve cached backbone features instead of tokens (frozen backbone, our own head),
        in batches drawn, shared under DDP and resumed as token batches are (_loader)."""
        self.batch_size = batch_size or self.batch_size
        self.features = {name: FeatureSplit(features[name], self.tokenized[name].labels)
                         for name in self.tokenized}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        """Tokens, or cached features after use_features, in LengthGroupedBatches: the seed
        and the epoch fix the training order, DDP ranks share each batch, and a resumed run
        skips what its checkpoint had trained (state_dict / load_state_dict)."""
        size = self.batch_size if shuffle else self.eval_batch_size
        data = self.features[split] if self.features else self.tokenized[split]
        batches = LengthGroupedBatches(data.lengths, size, shuffle=shuffle, seed=self.seed)
        if shuffle:
            self._train_batches = batches
            if self._resume_at is not None:  # skip what the checkpoint had trained
                batches.set_epoch(self._resume_at[0])
                batches.skip(*self._resume_at)
        # features are one tensor in memory: workers would only cost their start
        workers = 0 if self.features else self.num_workers
        # its own generator: each iterator draws a seed, which must not come from the global
        # generator, or a resumed run would draw other dropout masks than one never stopped
        return DataLoader(data, batch_sampler=batches, collate_fn=data.collate,
                          num_workers=workers, persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def state_dict(self) -> dict[str, int]:
        """Where training is, for a checkpoint: the epoch and the batches trained in it; after
        an epoch's last batch, the start of the next. (Lightning's own resumable-loader
        path restores too late: configure_optimizers builds our loader early to count the
        training steps, and Lightning draws from that one.)"""
        batches = self._train_batches
        if batches is None or self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= len(batches):
            return {"epoch": batches.epoch + 1, "batches": 0}
        return {"epoch": batches.epoch, "batches": done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """A run resumed from a checkpoint: its training loader starts at the checkpoint's
        epoch, past the batches it had trained."""
        if state:
            self._resume_at = (int(state["epoch"]), int(state["batches"]))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
