"""Serving of registered models by `models:/` URI; knows models only through the registry.

Four parts, each a sub-package or a file: `proxy/` answers requests online (the app, its routes,
batching, the backends it supervises, shadow scoring, the log's spool); `batch/` scores files on
Spark (`python -m serving.batch`); `documents/` renders what people read (decision records, model
cards, waterfalls); and the modules here are what they share (settings, errors, the bodies the API
answers, the registry lookup) beside the one-file commands (`python -m serving`, `serving.score`,
`serving.entities`). Shared modules import no sub-package; `batch/` and `documents/` never import
`proxy/`; tests/test_quality.py holds each package to its rule.
"""
