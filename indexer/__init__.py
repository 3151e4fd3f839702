"""Item-ID trees and constrained beam search: pure numpy, shared by training and serving.

- `IdTree` (tree.py): the tree arrays, derived views, save/load, validate.
- builders (build.py): `build_balanced` (SEATER Algorithm 1), `build_kmeans`,
  `build_random`, `from_codes`; `build_tree(embeddings, BuildConfig)` dispatches.
- `insert_items` (insert.py): cold-start insertion without moving existing items.
- `beam_search` (search.py): vectorised constrained beam search; `exhaustive_search`
  is its exact oracle for tests.
"""

from indexer.build import (
    BuildConfig,
    BuildReport,
    CodesReport,
    build_balanced,
    build_kmeans,
    build_random,
    build_tree,
    from_codes,
    level_sse,
)
from indexer.insert import InsertConfig, InsertReport, insert_items
from indexer.scorers import DotProductScorer, TableScorer
from indexer.search import Scorer, SearchResult, beam_search, exhaustive_search
from indexer.tree import (
    FORMAT_VERSION,
    IdTree,
    TreeFormatError,
    TreeValidationError,
    ceil_log,
    node_centroids,
)

__all__ = [
    "FORMAT_VERSION",
    "BuildConfig",
    "BuildReport",
    "CodesReport",
    "DotProductScorer",
    "IdTree",
    "InsertConfig",
    "InsertReport",
    "Scorer",
    "SearchResult",
    "TableScorer",
    "TreeFormatError",
    "TreeValidationError",
    "beam_search",
    "build_balanced",
    "build_kmeans",
    "build_random",
    "build_tree",
    "ceil_log",
    "exhaustive_search",
    "from_codes",
    "insert_items",
    "level_sse",
    "node_centroids",
]
