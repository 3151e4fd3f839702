"""The production engine loader: the bundle's manifest picks the engine."""

from __future__ import annotations

import logging
from pathlib import Path

from service.model.bundle import DenseBundle, load_bundle
from service.model.dense import DenseEngine
from service.model.engine import Engine
from service.model.seater import SeaterEngine
from service.model.sessions import RuntimeOptions
from service.settings import Settings

log = logging.getLogger(__name__)


def load_engine(path: Path, settings: Settings) -> Engine:
    """Verify and load the bundle at ``path`` into the engine its ``kind`` calls for.

    The holder smoke-tests the result before it serves.
    """
    options = RuntimeOptions.from_settings(settings)
    bundle = load_bundle(path)
    engine: Engine
    if isinstance(bundle, DenseBundle):
        engine = DenseEngine(bundle, options)
    else:
        engine = SeaterEngine(bundle, options)
    log.info(
        "loaded %s bundle %s (%s items, providers %s)",
        engine.info.kind,
        engine.version,
        engine.info.n_items,
        engine.info.providers,
    )
    return engine
