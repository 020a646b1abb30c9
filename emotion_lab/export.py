"""Export a trained run to standard formats.

    python -m emotion_lab.export run_dir=<run> format=hf out=exports/hf
    python -m emotion_lab.export run_dir=<run> format=onnx out=exports/onnx quantize=true

`hf`: a plain Hugging Face model directory (LoRA merged into the backbone with PEFT's
merge_and_unload, the fitted temperatures folded into the output layer, label names in
`id2label`, thresholds in `config.emotion_lab`), which
`transformers.pipeline("text-classification", model=out, top_k=None,
function_to_apply="sigmoid")` loads. Only runs with HF's own sequence-classification head
(`model.head.pooling=cls`) have a transformers class; emotion_lab's own head (mean pooling,
MiniLM's default) exports to ONNX instead.

`onnx`: `model.onnx` (inputs input_ids and attention_mask; outputs `logits` and `probs`),
the tokenizer and `emotion_lab_onnx.json` (labels, thresholds, temperatures: the predictor
applies them as for the run itself, inference/decision.py); `quantize=true`
adds `model.int8.onnx` (onnxruntime dynamic int8 quantization). Outputs are checked
against PyTorch, and with evaluate=true the test macro-F1 of each file is measured on the
run's test split (export_report.json).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emotion_lab.cli import parse_key_values, run_face
from emotion_lab.data.types import Problem
from emotion_lab.errors import ExportError
from emotion_lab.evaluation.metrics import f1_scores
from emotion_lab.inference import EmotionClassifier, load_onnx
from emotion_lab.models.kinds import kind_of
from emotion_lab.models.saving import load_model, read_model_spec
from emotion_lab.rundir import check_run_dir, read_json, read_thresholds, write_json
from emotion_lab.settings import Choice, Int

DEFAULTS = {"run_dir": None, "format": "onnx", "out": None, "quantize": False,
            "evaluate": True, "opset": 18}
# opset 18: LayerNormalization and the attention ops torch.onnx emits; the newest ONNX
# Runtime runs up to 23
RULES = {"format": Choice("onnx", "hf"), "opset": Int(18, high=23)}
# ONNX Runtime against PyTorch, fp32, on the same texts: the largest probability difference
# accepted (measured differences are ~1e-6; fused kernels reorder float sums).
ONNX_TOLERANCE = 1e-4
CHECK_TEXTS = ["Thank you so much, this made my day!", "I can't believe they did that.",
               "ok", "Why would anyone think that is a good idea? It is awful and sad."]



def output_layer(model: nn.Module, num_labels: int) -> nn.Linear:
    """The last linear layer with one output per label: the one temperatures scale."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)
              and m.out_features == num_labels]
    if not layers:
        raise ExportError(f"no linear layer with {num_labels} outputs to fold temperatures into")
    return layers[-1]


@torch.no_grad()
def fold_temperatures(model: nn.Module, temperatures: list[float] | None) -> None:
    """Divide the output layer by each label's temperature: logits come out calibrated."""
    if temperatures is None:
        return
    layer = output_layer(model, len(temperatures))
    t = torch.tensor(temperatures, dtype=layer.weight.dtype)
    layer.weight.div_(t[:, None])
    if layer.bias is not None:
        layer.bias.div_(t)


def _load(run_dir: Path, fmt: str) -> tuple[nn.Module, Any, dict[str, Any], dict[str, Any]]:
    check_run_dir(run_dir)
    spec = read_model_spec(run_dir / "model")
    kind_of(spec["kind"]).check_export(fmt, spec)  # before loading: a refusal costs nothing
    thresholds = read_thresholds(run_dir / "thresholds.json", spec["labels"],
                                 Problem(spec["problem_type"]).single_label)
    model, tokenizer, spec = load_model(run_dir / "model", merge=True)
    return model.eval(), tokenizer, spec, thresholds


def export_hf(run_dir: Path, out: Path) -> dict[str, Any]:
    """A transformers pipeline has no place for temperatures: they are folded into the
    output layer, and the pipeline's scores are checked against the predictor's."""
    model, tokenizer, spec, thresholds = _load(run_dir, "hf")
    fold_temperatures(model, spec.get("temperatures"))
    single = Problem(spec["problem_type"]).single_label
    model.config.id2label = dict(enumerate(spec["labels"]))
    model.config.label2id = {name: i for i, name in enumerate(spec["labels"])}
    model.config.problem_type = ("single_label_classification" if single
                                 else "multi_label_classification")
    model.config.emotion_lab = {"thresholds": thresholds,
                                "temperatures_folded": spec.get("temperatures"),
                                "source_run": str(run_dir)}
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(out), top_k=None,
                    function_to_apply="softmax" if single else "sigmoid")
    ours = EmotionClassifier.from_run(run_dir, precision="fp32").scores(CHECK_TEXTS)
    theirs = np.array([[{d["label"]: d["score"] for d in row}[name] for name in spec["labels"]]
                       for row in pipe(CHECK_TEXTS)])
    return {"format": "hf", "out": str(out),
            "pipeline_max_abs_diff": float(np.abs(ours - theirs).max())}


class OnnxGraph(nn.Module):
    """What the ONNX file computes: the model's logits and probabilities."""

    def __init__(self, model: nn.Module, problem: Problem) -> None:
        super().__init__()
        self.model, self.problem = model, problem

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits, self.problem.activation(logits)


def measure_test_macro_f1(clf: EmotionClassifier, run_dir: Path) -> float:
    texts, labels = read_json(run_dir / "test_texts.json"), np.load(run_dir / "test_labels.npy")
    probs = clf.scores(texts)
    return f1_scores(clf.decide(probs).astype(float), labels, np.full(len(clf.labels), 0.5))[
        "macro_f1"]


def export_onnx(run_dir: Path, out: Path, quantize: bool, evaluate: bool,
                opset: int) -> dict[str, Any]:
    model, tokenizer, spec, thresholds = _load(run_dir, "onnx")
    graph = OnnxGraph(model, Problem(spec["problem_type"])).eval()
    example = tokenizer(CHECK_TEXTS[:2], padding=True, return_tensors="pt")
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
    out.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(graph, (example["input_ids"], example["attention_mask"]),
                      str(out / "model.onnx"), input_names=["input_ids", "attention_mask"],
                      output_names=["logits", "probs"], opset_version=opset, dynamo=True,
                      dynamic_shapes={"input_ids": {0: batch, 1: sequence},
                                      "attention_mask": {0: batch, 1: sequence}},
                      external_data=False)
    tokenizer.save_pretrained(out)
    write_json(out / "emotion_lab_onnx.json", {
        "labels": spec["labels"], "thresholds": thresholds, "problem_type":
        spec["problem_type"], "max_length": spec["backbone"]["max_length"],
        "temperatures": spec.get("temperatures"), "source_run": str(run_dir)})
    reference = EmotionClassifier.from_run(run_dir, precision="fp32")
    exported = load_onnx(out)
    diff = float(np.abs(reference.scores(CHECK_TEXTS) - exported.scores(CHECK_TEXTS)).max())
    if diff > ONNX_TOLERANCE:
        raise ExportError(f"ONNX outputs differ from PyTorch by {diff:.2e} (> {ONNX_TOLERANCE})")
    report: dict[str, Any] = {"format": "onnx", "out": str(out), "opset": opset,
                              "max_abs_diff_vs_pytorch": diff, "tolerance": ONNX_TOLERANCE}
    if quantize:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # The dynamo exporter's recorded intermediate shapes can disagree with ONNX's own
        # shape inference, which quantization reruns; dropping them lets it infer afresh.
        graph_proto = onnx.load(out / "model.onnx")
        graph_proto.graph.ClearField("value_info")
        stripped = out / "model.fp32-no-shapes.onnx"
        onnx.save(graph_proto, stripped)
        try:
            # per-channel scales: on a MiniLM run 89% of test label sets matched fp32
            # against 79% with one scale per tensor
            quantize_dynamic(stripped, out / "model.int8.onnx", weight_type=QuantType.QInt8,
                             per_channel=True)
        finally:
            stripped.unlink(missing_ok=True)
        quantized = load_onnx(out, "model.int8.onnx")
        report["int8_max_abs_diff_vs_pytorch"] = float(np.abs(
            reference.scores(CHECK_TEXTS) - quantized.scores(CHECK_TEXTS)).max())
    if evaluate and (run_dir / "test_texts.json").is_file():
        report["test_macro_f1"] = {"pytorch": measure_test_macro_f1(reference, run_dir),
                                   "onnx": measure_test_macro_f1(exported, run_dir)}
        if quantize:
            report["test_macro_f1"]["onnx_int8"] = measure_test_macro_f1(quantized, run_dir)
    return report


def run(argv: list[str]) -> dict[str, Any]:
    args = parse_key_values(argv, DEFAULTS, rules=RULES)
    run_dir = Path(args["run_dir"])
    out = Path(args["out"] or run_dir / f"export_{args['format']}")
    if args["format"] == "hf":
        report = export_hf(run_dir, out)
    elif args["format"] == "onnx":
        report = export_onnx(run_dir, out, args["quantize"], args["evaluate"], args["opset"])
    else:
        raise ExportError(f"format={args['format']}: choose hf or onnx")
    write_json(out / "export_report.json", report)
    print(report)
    return report


def main() -> int:
    return run_face(run)


if __name__ == "__main__":
    sys.exit(main())
