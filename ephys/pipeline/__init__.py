"""Orchestration above the stages: the per-recording task chain and the Dask driver."""
