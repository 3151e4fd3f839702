"""Heavy runs whose measured results land under reports/: ``python -m benchmarks.<name>``."""
