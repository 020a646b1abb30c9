"""Models: backbones and heads, adaptation strategies, the LightningModule, the frozen-backbone
feature cache, training callbacks and the precision choice. Imports data and evaluation, never
a face or the run directory."""
