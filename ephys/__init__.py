"""ephys: turn a clinical EEG archive into a curated, queryable, training-ready corpus.

Stages, in the one direction data flows::

    ingest -> qc -> annotate -> shard -> catalog -> manifest -> pretrain

``ephys.schemas`` holds the pydantic records passed between stages.
"""

__version__ = "0.1.0"
