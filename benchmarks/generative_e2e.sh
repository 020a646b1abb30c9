#!/bin/bash
# Issue 16 end to end on local weights: template rationales from a MiniLM run, a tiny random
# Llama trained with LoRA on GoEmotions with them, its zero-shot run, evaluate and predict.
# Needs: python -m emotion_lab.prepare out_dir=outputs/issue16/prepared; a MiniLM run in
# outputs/issue14/full/0; python -m emotion_lab.testing.tiny_backbones llama outputs/issue16/tiny_llama
set -e
cd "$(dirname "$0")/.."
python -m emotion_lab.rationales data_dir=outputs/issue16/prepared source=template template.run_dir=outputs/issue14/full/0 max_examples=400
common="backbone=smollm2_135m backbone.model=outputs/issue16/tiny_llama model=generative adapter=lora data.dir=outputs/issue16/prepared data.max_train_examples=400 data.max_eval_examples=200"
python -m emotion_lab.train $common model.prompt.rationale=after trainer.max_epochs=3 hydra.run.dir=outputs/issue16/llama_lora_after > outputs/issue16/llama_lora_after.log 2>&1
python -m emotion_lab.train $common model.prompt.rationale=after trainer.max_epochs=0 hydra.run.dir=outputs/issue16/llama_zero_shot > outputs/issue16/llama_zero_shot.log 2>&1
python -m emotion_lab.evaluate run_dir=outputs/issue16/llama_lora_after threshold=global calibration=global > outputs/issue16/evaluate.log 2>&1
python -m emotion_lab.predict run_dir=outputs/issue16/llama_lora_after text="Thank you so much, this made my day!" > outputs/issue16/predict.json 2> outputs/issue16/predict.log
