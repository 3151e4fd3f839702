"""The data plane, model-agnostic: validate a retrieval (retrieval), batch it (batcher),
cache encoder states (cache, breaker), and hold the serving model with its hot swap
(holder). Engines are reached only through :class:`service.model.engine.Engine`."""
