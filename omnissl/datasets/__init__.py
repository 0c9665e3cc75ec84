"""The core's own data sets, for any modality: ``shards`` (samples written by ``omnissl shard``, read
through LitData, locally or from an object store) and ``mixture`` (several sources sampled in
proportion to weights). Both are map-style (a length, random access, ``labels`` and ``groups`` where
their sources have them), so the training loop's seeded sampler orders, splits and resumes them as
it does any plugin's data set. docs/design.md#streaming says why and how.
"""
