"""Data: sources, cleaning, taxonomies, tokenised splits, batching and the DataModule.

`types` (LabelledData, Split, DataError) sits at the bottom; sources (goemotions, raters,
local_files, hub_text, prepared) return LabelledData; cleaning and taxonomy map it to
LabelledData; `datamodule` ties them together and tokenises once. Nothing here imports
models, evaluation or a face.
"""
