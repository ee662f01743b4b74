"""Drift, explanation drift and realised performance from the prediction log."""
