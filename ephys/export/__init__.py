"""Exports of a manifest's corpus into the field's formats (EDF+ now; see :mod:`ephys.export.edf`)."""
