"""Writers of the vendor formats ephys reads: EDF+/BDF+, Micromed .TRC, Nicolet .e.

They build the demo archive of ``ephys quickstart`` (:mod:`ephys.ingest.tiled`), the benchmark
archives and the test suite's files, valid and damaged on purpose; ingest never uses them. Each is
written from the format's specification or the project's format notes, independently of the
reader it feeds (a test that writes with one and reads with the other checks both against the
specification, and against MNE, pyEDFlib or neo where those read the format).
"""
