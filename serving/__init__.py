"""Serving of registered models by `models:/` URI; knows models only through the registry."""
