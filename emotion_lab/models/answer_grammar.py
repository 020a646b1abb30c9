"""Constrained decoding for `model=generative`: every answer the model writes parses into
known labels, each named at most once, on an untrained model too
(`model.generation.constrained`, default true).

The grammar is that of the targets data/prompts.py teaches:

    rationale: none     prefix item (separator item)* end
    rationale: after    prefix item (separator item)* (end | "\\n" reasoning-prefix free-text)
    rationale: before   [reasoning-prefix free-text "\\n"] prefix item (separator item)* end

where `prefix` is `prompt.labels_prefix` (" emotions:"), an item is " " and a label's word
(`PromptFormat.words`: its verbalizer or its name) or, alone, `prompt.none_label`, and end is
the tokenizer's end-of-text token. The order of the labels is free (targets teach label-index
order; the parser ignores order); a label already written is not offered again. For a
single-label task (`one_label`) an answer is exactly one label: no separator, no none.

It works on token ids, as the tokenizer writes each piece where the targets have it: the
prefix at the start of the answer, each label word after the prefix together with what
follows it (a separator, the end, or the reasoning prefix), since some tokenizers merge a
word with the comma after it or drop the newline (T5 writes "joy reasoning:"). The pieces
form a token trie; at each step a `LogitsProcessor` leaves only the tokens that continue a
path of the trie. Free text is free, except that the end token cannot close a rationale
written before the labels. The budget (`max_new_tokens`) is respected: a path is offered only
if it and the shortest answer after it still fit, and a rationale written first is cut, and
the labels prefix written, when only the room for the labels is left. So an answer never
stops halfway through a label. A rationale-first answer may also reach its labels by itself
(the model writes the prefix in its free text): the same search the parser does finds it.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from emotion_lab.data.prompts import PromptFormat
from emotion_lab.errors import ConfigError

NONE = -1  # the word index of prompt.none_label
SEP, END, REASON = "separator", "end", "reasoning"  # what follows a label word


def is_constrained(generation: dict[str, Any]) -> bool:
    """`generation.constrained`; runs saved before the key existed wrote their answers freely,
    so they load as they were evaluated (false)."""
    return bool(generation.get("constrained", False))


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    outcome: Any = None  # set on the node where a path ends (a leaf)
    # every path through this node: (outcome, tokens still to write after it; a final end
    # token is not counted, an answer cut just before it parses all the same)
    paths: list[tuple[Any, int]] = field(default_factory=list)


def _trie(paths: list[tuple[list[int], Any]], eos: int) -> _Node:
    root = _Node()
    for ids, outcome in paths:
        if not ids:
            raise ConfigError(f"constrained decoding: {outcome} has no tokens; check "
                              f"model.prompt (labels_prefix, rationale_prefix, words).")
        length = len(ids) - (ids[-1] == eos)
        node = root
        for depth, token in enumerate(ids):
            node = node.children.setdefault(token, _Node())
            node.paths.append((outcome, max(length - depth - 1, 0)))
            if node.outcome is not None:
                break
        if node.outcome is not None or node.children:
            raise ConfigError(f"constrained decoding: the answer piece {outcome} is the start "
                              f"of another; a label word may not hold prompt.separator or "
                              f"another label's tokens followed by the separator.")
        node.outcome = outcome
    return root


@dataclass
class _Row:
    """Where one answer stands in the grammar."""

    phase: str  # start | items | free_before | to_labels | free | done
    node: _Node
    used: set[int] = field(default_factory=set)
    ids: list[int] = field(default_factory=list)


class AnswerGrammar:
    """The token tries of `fmt`'s answers for `tokenizer` (`one_label`: exactly one label per
    answer); `processor(max_new_tokens)` makes the LogitsProcessor of one `generate` call."""

    def __init__(self, tokenizer, fmt: PromptFormat, one_label: bool = False) -> None:
        self.tokenizer, self.format = tokenizer, fmt
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ConfigError(f"{type(tokenizer).__name__} has no end-of-text token: "
                              f"constrained decoding needs one to end an answer.")
        if fmt.rationale != "none" and not fmt.rationale_prefix.strip():
            raise ConfigError(f"prompt.rationale={fmt.rationale} with an empty "
                              f"rationale_prefix: constrained decoding cannot tell the "
                              f"rationale from the labels.")
        if not fmt.labels_prefix.strip() and fmt.rationale == "before":
            raise ConfigError("prompt.rationale=before needs a labels_prefix to find the labels "
                              "after the rationale.")
        prefix, reason = fmt.labels_prefix, fmt.rationale_prefix
        words = {i: w for i, w in enumerate(fmt.words)}
        followers = {END: ""} if one_label else {SEP: fmt.separator, END: ""}
        if fmt.rationale == "after":
            followers[REASON] = "\n" + reason.strip()
        pieces = [(i, f, " " + w + text) for i, w in words.items() for f, text in
                  followers.items()]
        if not one_label:
            pieces += [(NONE, f, " " + fmt.none_label + text) for f, text in followers.items()
                       if f != SEP]
        items = self._after(prefix, [text for _, _, text in pieces])
        self.items = _trie([(ids + [self.eos] if f == END else ids, (i, f))
                            for (i, f, _), ids in zip(pieces, items, strict=True)], self.eos)
        # the fewest tokens of an item that ends the answer, per word (what a separator
        # commits to), and of the shortest answer
        self.finish = {i: min(left for (j, f), left in self._leaf_paths(self.items)
                              if j == i and f == END) for i in (*words, NONE)
                       if one_label is False or i != NONE}
        self.item_min = min(self.finish.values())
        starts = [(self._ids(prefix), "items")] if prefix.strip() else []
        if fmt.rationale == "before":
            starts.append((self._ids(reason), "free_before"))
        self.start = _trie(starts, self.eos) if starts else None
        self.shortest = len(starts[0][0]) + self.item_min if prefix.strip() else self.item_min
        self.to_labels, self.reserve = None, 0
        if fmt.rationale == "before":  # a rationale first is cut where only this much is left
            to_labels = self._after(reason + " x", ["\n" + prefix.strip()])[0]
            self.to_labels = _trie([(to_labels, "items")], self.eos)
            self.reserve = len(to_labels) + self.item_min

    @classmethod
    def of(cls, tokenizer, fmt: PromptFormat, one_label: bool = False) -> AnswerGrammar:
        """The grammar of `fmt` for `tokenizer`, built once per pair (a generate call per
        batch would otherwise tokenise every label word again)."""
        key = (fmt.labels_prefix, fmt.rationale_prefix, fmt.separator, fmt.none_label,
               fmt.rationale, tuple(fmt.words), one_label)
        built = _BUILT.setdefault(tokenizer, {})
        if key not in built:
            built[key] = cls(tokenizer, fmt, one_label)
        return built[key]

    # --- building ---------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _after(self, context: str, texts: list[str]) -> list[list[int]]:
        """The tokens of each text as the tokenizer writes it after `context` (the context's
        own tokens removed), or alone where the context's tokens change with it."""
        base = self._ids(context)
        full = self.tokenizer([context + t for t in texts], add_special_tokens=False)
        alone = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [ids[len(base):] if ids[:len(base)] == base else own
                for ids, own in zip(full["input_ids"], alone, strict=True)]

    @staticmethod
    def _leaf_paths(root: _Node) -> list[tuple[Any, int]]:
        """(outcome, tokens to its end, a final end token not counted) of every path."""
        return [(outcome, left + 1) for child in root.children.values()
                for outcome, left in child.paths]

    # --- decoding ---------------------------------------------------------------------------

    def processor(self, max_new_tokens: int) -> AnswerProcessor:
        if max_new_tokens < self.shortest:
            raise ConfigError(f"generation.max_new_tokens={max_new_tokens} is too few for the "
                              f"shortest answer ({self.shortest} tokens); raise it.")
        return AnswerProcessor(self, max_new_tokens)

    def new_row(self) -> _Row:
        return _Row("start", self.start) if self.start is not None else _Row("items", self.items)

    def _need(self, row: _Row, outcome: Any) -> float:
        """Tokens the answer needs after a path with this outcome ends (inf: not allowed)."""
        if outcome == "items":
            return self.item_min
        if outcome == "free_before":
            return self.reserve
        word, follower = outcome
        if word in row.used or (word == NONE and row.used):
            return math.inf
        if follower != SEP:
            return 0
        rest = [left for i, left in self.finish.items() if i not in row.used | {word, NONE}]
        return min(rest) if rest else math.inf

    def allowed(self, row: _Row, budget: int) -> tuple[str, list[int]]:
        """What `row` may write next with `budget` tokens left: ("only", ids), ("except",
        ids) or ("any", []). A rationale written first ends here when only the room for
        the labels is left: the labels prefix follows."""
        if row.phase == "free_before" and budget <= self.reserve:
            row.phase, row.node = "to_labels", self.to_labels
        if row.phase in ("free", "done"):
            return "any", []
        if row.phase == "free_before":
            return "except", [self.eos]
        return "only", [token for token, child in row.node.children.items()
                        if any(1 + left + self._need(row, outcome) <= budget
                               for outcome, left in child.paths)] or [self.eos]

    def advance(self, row: _Row, token: int) -> None:
        """`row` after writing `token`."""
        row.ids.append(token)
        if row.phase in ("free", "done"):
            return
        if row.phase == "free_before":
            found = self.format.find(self.format.labels_prefix,
                                     self.tokenizer.decode(row.ids, skip_special_tokens=True))
            if found is not None:
                row.phase, row.node = "items", self.items
            return
        node = row.node.children.get(token)
        if node is None:  # another processor overruled ours (or the budget ran out)
            row.phase = "done"
            return
        row.node = node
        if node.outcome is None:
            return
        if node.outcome in ("items", "free_before"):
            row.phase = node.outcome
            row.node = self.items
            return
        word, follower = node.outcome
        row.used.add(word)
        row.phase, row.node = {SEP: ("items", self.items), END: ("done", node),
                               REASON: ("free", node)}[follower]


_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class AnswerProcessor(LogitsProcessor):
    """Keeps one `generate` call's answers in the grammar (a fresh one per call: it follows
    each row's answer as it grows)."""

    def __init__(self, grammar: AnswerGrammar, max_new_tokens: int) -> None:
        self.grammar, self.max_new_tokens = grammar, max_new_tokens
        self.start: int | None = None
        self.rows: list[_Row] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.start is None:
            self.start = input_ids.shape[1]
            self.rows = [self.grammar.new_row() for _ in range(len(input_ids))]
        else:
            for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
                self.grammar.advance(row, token)
        budget = self.max_new_tokens - (input_ids.shape[1] - self.start)
        keep = torch.zeros_like(scores, dtype=torch.bool)
        for i, row in enumerate(self.rows):
            how, ids = self.grammar.allowed(row, budget)
            keep[i] = how != "only"
            keep[i, ids] = how == "only"
        return scores.masked_fill(~keep, -math.inf)
