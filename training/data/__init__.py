"""Datasets: loaders, the synthetic generator, the registry and the CSR sequence type."""

from training.data.dataset import InteractionData, ItemText
from training.data.loaders import DataError, load_interaction_log, load_s3rec
from training.data.options import DataOptions
from training.data.registry import config_spec, load_dataset, resolve_dataset
from training.data.sequences import Sequences
from training.data.synthetic import SyntheticConfig, make_synthetic

__all__ = [
    "DataError",
    "DataOptions",
    "InteractionData",
    "ItemText",
    "Sequences",
    "SyntheticConfig",
    "config_spec",
    "load_dataset",
    "load_interaction_log",
    "load_s3rec",
    "make_synthetic",
    "resolve_dataset",
]
