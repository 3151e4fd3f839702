"""LMIndexer-style semantic IDs learned from item text (ICML 2024), at a scale that trains here.

A frozen sentence encoder (all-MiniLM-L6-v2) reads each item's title and categories; a
small sequential discrete auto-encoder turns that vector into L codes from per-level
codebooks of size k, trained position by position to rebuild the item's words, so the
codes are a path in a k-ary tree that groups items by what they are, with no
interaction history needed (cold start).

Modules, one concept each:
- ``config``: the run's frozen dataclasses;
- ``text``: item texts, the cached sentence embeddings, the bag-of-words vocabulary;
- ``model``: encoder heads, codebooks (straight-through argmax), reconstructor;
- ``losses``: reconstruction, prefix contrastive, commitment;
- ``assign``: capacity-aware code assignment (collision-free, balanced usage);
- ``train``: the progressive schedule (Algorithm 1);
- ``stats``, ``ami``, ``plots``: diagnostics, AMI vs categories, the usage plot;
- ``pipeline``: ``seater index semantic`` (run folder, report, ``load_indexer``);
- ``compare``: ``seater index ami`` (semantic vs SASRec-tree vs random vs text-tree IDs);
- ``cold_start``: code, place, embed and publish new items without retraining;
- ``cli``: the ``seater index`` commands.
"""
