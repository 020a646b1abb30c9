"""Models: the kinds of model (kinds.py: classifier, generative) and what they are made of:
backbones, heads, adaptation strategies, language-model scoring, the LightningModules, the
model folder's saving and loading, the frozen-backbone feature cache and the precision
choice. Imports data, evaluation and the run-directory records; never training or a face.
Only the *_module.py files import Lightning."""
