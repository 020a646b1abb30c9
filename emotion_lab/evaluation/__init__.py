"""Evaluation: metrics, threshold policies, calibration, grouped label levels, run comparison,
error analysis and figures, all pure functions of probabilities and labels; `run_evaluation`
turns a model's validation and test probabilities into a finished evaluation. Imports data
only (taxonomies), never models or a face."""
