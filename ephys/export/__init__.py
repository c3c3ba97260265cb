"""Exports of a manifest's corpus into the field's formats: EDF+ (:mod:`ephys.export.edf`) and BIDS (:mod:`ephys.export.bids`)."""
