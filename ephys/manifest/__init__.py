"""Manifests: frozen, hashed selections of epochs to train on (see :mod:`ephys.manifest.create`)."""

from ephys.manifest.create import create_manifest, show_manifest

__all__ = ["create_manifest", "show_manifest"]
