"""Offline pipeline: data, protocols, SASRec, SEATER, LMIndexer-style IDs, ONNX export, CLI."""
