"""Fault tolerance over a corpus of damaged EDF, BDF, Micromed TRC, Nicolet .e, Nihon Kohden .EEG, FIF, EEGLAB
and BrainVision files.

A corpus of damaged files (written by ``tests/damaged_corpus.py``) lies next to four healthy
recordings (EDF+, BDF+, TRC, .e). Covered, each case its own file:

* zero bytes; truncation at every structural boundary (EDF: inside the 256-byte fixed header,
  right after it, inside the signal headers, right after the header, mid data record; TRC: inside
  the fixed header, inside the zones, right before the data, mid sample frame; .e: inside the magic,
  the tag table, the main index, right before the first section, after and inside a section; NK:
  inside the header, right before the samples, mid samples);
* wrong magic; header fields that lie (EDF header length, record count larger / negative / text,
  signal count 0 / 9999 / text; TRC channel count, bytes per sample, data offset, zone table,
  header type; .e index pointer and entry count; NK waveform sign, control-block address, rate and
  channel count);
* zero, negative, NaN and absurd sampling rates (EDF samples per record and record duration,
  TRC Rate_Min, .e TSInfo rate); NaN and empty physical / digital ranges;
* EDF+ annotation channels with broken TALs; Latin-1 and non-UTF-8 annotation text (readable:
  the 20-s files are rejected as too short, with their annotation text decoded);
* CRLF damage (a binary file sent through a text-mode transfer) of each format and the damaged
  real file from ``shared/data/real``; the same bytes under two paths; a symbolic-link loop;
  a file the operating system refuses to read (chmod 000, with root's DAC override dropped).

One ingest of the whole archive and one of the healthy files alone (module-scoped) back every test:
each damaged file gets a catalog row with a typed failure code and reason (the table ``CASES``),
the run completes and its counts add up, the healthy files give byte-identical shards and equal
catalog rows, nothing half-written is left, and duplicates give one row.

Product bugs found are ``xfail(strict=True)`` cases with the reason; see ``CASES``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import select

from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.ingest.discover import discover
from ephys.ingest.hashing import hash_recording
from ephys.pipeline.run import ingest
from ephys.pipeline.task import process_recording
from ephys.schemas import IngestConfig
from tests.damaged_corpus import BAD_UTF8, LATIN1_TEXT, write_damaged, write_healthy
from ephys.ingest.writers.edf import write_edf
from tests.ingest_helpers import rows_by_sha, sha, shard_bytes, table_counts

CONFIG = IngestConfig(montage="native", min_epochs=1)
#: Typed failure codes a damaged file may get.
KNOWN_CODES = {"empty_file", "wrong_magic", "corrupt", "unsupported_format", "unreadable", "too_short", "no_eeg_channels"}
#: Signs of an untyped failure: a Python exception leaking into the catalog.
GENERIC_CODES = {"internal_error", "worker_crash", "out_of_memory", "io_error", "error", "read_error"}
GENERIC_REASON = re.compile(r"Traceback|\b\w+Error\b|struct\.error|Exception")
UNREADABLE = "unreadable-edf"  # the chmod-000 case; its row is keyed by its path, not its content


def _bug(reason: str):
    return pytest.mark.xfail(strict=True, reason="product bug: " + reason)


def _case(name: str, status: str, code: str, reason: str, bug: str | None = None):
    """One row of the table; ``bug`` makes it a strict xfail naming the product bug."""
    return pytest.param(name, status, code, reason, id=name, marks=[_bug(bug)] if bug else [])


# case, status, failure_code, regex the failure_reason must match (the zero-byte files of the three
# formats are one content, so one row: whichever is hashed first is processed, the others are duplicates)
CASES = [
    # -- EDF: truncation at each structural boundary -------------------------------------------
    _case("edf-zero-bytes", "failed", "empty_file", r"^file is empty \(0 bytes\)$"),
    _case("edf-cut-in-fixed-header", "failed", "corrupt", r"truncated header: 100 bytes, an EDF header needs"),
    _case("edf-cut-after-fixed-header", "failed", "corrupt", r"truncated header: 256 bytes, the header .*1024"),
    _case("edf-cut-in-signal-headers", "failed", "corrupt", r"truncated header: 556 bytes, the header .*1024"),
    _case("edf-cut-after-header", "failed", "corrupt", r"file size 1024 bytes does not match its header"),
    _case("edf-cut-mid-record", "failed", "corrupt", r"file size 3884 bytes does not match its header"),
    # -- EDF: magic and header fields that lie -------------------------------------------------
    _case("edf-wrong-magic", "failed", "wrong_magic", r"not an EDF/BDF file"),
    _case("edf-header-bytes-wrong", "failed", "corrupt", r"header length field says 9999 bytes but 3 signals"),
    _case("edf-header-bytes-text", "failed", "corrupt", r"'header length' is not a number"),
    _case("edf-n-records-larger", "failed", "corrupt", r"\(58224 bytes expected: .* 50 records x 1144 bytes\)"),
    _case("edf-n-records-negative", "failed", "corrupt", r"number of data records is -5"),
    _case("edf-n-records-text", "failed", "corrupt", r"'number of data records' is not a number"),
    _case("edf-n-signals-zero", "failed", "corrupt", r"header length field says 1024 bytes but 0 signals need 256"),
    _case("edf-n-signals-absurd", "failed", "corrupt", r"number of signals 9999 is out of range"),
    _case("edf-n-signals-text", "failed", "corrupt", r"'number of signals' is not a number"),
    # -- EDF: sampling rates and ranges ---------------------------------------------------------
    _case("edf-spr-zero", "failed", "corrupt", r"fewer than 1 sample per data record"),
    _case("edf-spr-negative", "failed", "corrupt", r"fewer than 1 sample per data record"),
    _case("edf-spr-absurd", "failed", "corrupt", r"does not match its header"),
    _case("edf-spr-overflow", "failed", "corrupt", r"claims 1e\+30 samples per data record"),
    _case("edf-record-duration-zero", "failed", "corrupt", r"data record duration 0.0 s must be positive"),
    _case("edf-record-duration-negative", "failed", "corrupt", r"data record duration -1.0 s must be positive"),
    _case("edf-record-duration-nan", "failed", "corrupt", r"'data record duration' is not finite"),
    _case("edf-record-duration-absurd", "rejected", "no_eeg_channels", r"sampled at 0\.0853 Hz; ephys needs at least 32 Hz"),
    _case("edf-record-duration-years", "failed", "corrupt", r"days long .* more than a year is implausible"),
    _case("edf-physical-min-nan", "failed", "corrupt", r"'physical minimum of signal 1' is not finite"),
    _case("edf-physical-max-nan", "failed", "corrupt", r"'physical maximum of signal 2' is not finite"),
    _case("edf-physical-min-eq-max", "failed", "corrupt", r"signal 1 \('Fp1'\) has an empty digital or physical range"),
    _case("edf-digital-min-eq-max", "failed", "corrupt", r"signal 2 \('Cz'\) has an empty digital or physical range"),
    # -- EDF+: annotations ------------------------------------------------------------------------
    _case("edf-tal-onset-not-a-number", "failed", "corrupt", r"malformed annotation \(TAL\) in data record 3"),
    _case("edf-tal-no-sign", "failed", "corrupt", r"malformed annotation \(TAL\) in data record 7"),
    _case("edf-tal-garbage", "failed", "corrupt", r"malformed annotation \(TAL\) in data record 10"),
    # readable: 20 s of signal, so rejected as too short after a full read, annotations decoded
    _case("edf-annotation-latin1", "rejected", "too_short", r"too short: 0 valid 30-s epochs .*20\.0 s"),
    _case("edf-annotation-not-utf8", "rejected", "too_short", r"too short: 0 valid 30-s epochs .*20\.0 s"),
    # -- EDF/BDF: CRLF damage ----------------------------------------------------------------------
    _case("edf-crlf", "failed", "corrupt", r"does not match its header .*refusing to read shifted samples"),
    _case("edf-crlf-real", "failed", "corrupt", r"file size 2607197 bytes does not match its header \(2596896 bytes"),
    _case("bdf-cut-mid-record", "failed", "corrupt", r"does not match its header"),
    _case("bdf-wrong-magic", "failed", "wrong_magic", r"not an EDF/BDF file"),
    _case("bdf-digital-min-eq-max", "failed", "corrupt", r"signal 1 \('Fp1'\) has an empty digital or physical range"),
    _case("bdf-crlf", "failed", "corrupt", r"does not match its header .*refusing to read shifted samples"),
    # -- Micromed TRC ------------------------------------------------------------------------------
    _case("trc-zero-bytes", "failed", "empty_file", r"^file is empty \(0 bytes\)$"),
    _case("trc-cut-in-fixed-header", "failed", "corrupt", r"truncated header: 300 bytes, the fixed header needs 640"),
    _case("trc-cut-in-zones", "failed", "corrupt", r"truncated: data offset 185376 lies past the end of the file"),
    # no sample count in a TRC header: a file cut right before its data is a valid 0-s recording
    _case("trc-cut-before-data", "rejected", "too_short", r"too short: 0 valid 30-s epochs \(0 in all, 0\.0 s\)"),
    _case("trc-cut-mid-data", "failed", "corrupt", r"data area \(4001 bytes .* whole number of 4-byte sample frames"),
    _case("trc-wrong-magic", "failed", "wrong_magic", r"content does not match any known EEG format"),
    _case("trc-rate-zero", "failed", "corrupt", r"base sampling rate \(Rate_Min\) is 0 Hz"),
    _case("trc-n-channels-zero", "failed", "corrupt", r"number of channels is 0"),
    _case("trc-bytes-per-sample-3", "failed", "corrupt", r"bytes per sample is 3, expected 1, 2 or 4"),
    _case("trc-data-offset-past-eof", "failed", "corrupt", r"data offset \d+ lies past the end of the file"),
    _case("trc-zone-name-wrong", "failed", "corrupt", r"zone descriptor 1 is named 'LABXXX', expected 'LABCOD'"),
    _case("trc-logical-min-eq-max", "failed", "corrupt", r"channel 1 has an empty logical or physical calib"),
    _case("trc-header-type-unknown", "failed", "unsupported_format", r"unknown TRC header type 9"),
    _case("trc-crlf", "failed", "corrupt", r"zone \w+ .* extends past the end of the file"),
    # -- Nicolet .e ----------------------------------------------------------------------------------
    _case("e-zero-bytes", "failed", "empty_file", r"^file is empty \(0 bytes\)$"),
    _case("e-cut-in-magic", "failed", "wrong_magic", r"content does not match any known EEG format"),
    _case("e-cut-in-tag-table", "failed", "corrupt", r"truncated: 2000 bytes, the tag table and QI index need"),
    _case("e-cut-in-index", "failed", "corrupt", r"main-index block at byte 188664 holds \d+ entries"),
    _case("e-cut-before-sections", "failed", "corrupt", r"main-index entry 0 .* runs past the end of the file"),
    _case("e-cut-after-section", "failed", "corrupt", r"main-index entry \d+ .* runs past the end of the file"),
    _case("e-cut-mid-section", "failed", "corrupt", r"main-index entry \d+ .* runs past the end of the file"),
    _case("e-wrong-magic", "failed", "wrong_magic", r"content does not match any known EEG format"),
    _case("e-index-pointer-past-eof", "failed", "corrupt", r"main-index block pointer \d+ loops or lies past the end"),
    _case("e-index-count-absurd", "failed", "corrupt", r"QI index lists 268435455 main-index entries"),
    _case("e-sampling-rate-zero", "failed", "corrupt", r"channel 0: sampling rate or resolution is invalid"),
    _case("e-sampling-rate-negative", "failed", "corrupt", r"channel 0: sampling rate or resolution is invalid"),
    _case("e-sampling-rate-nan", "failed", "corrupt", r"channel 0: sampling rate or resolution is invalid"),
    _case("e-crlf", "failed", "corrupt", r"^corrupt \.e: "),
    # -- Nihon Kohden native .EEG (read through MNE after ephys's own check of its block structure) --
    _case("nk-cut-in-header", "failed", "corrupt", r"Nihon Kohden header truncated .*\(4096 bytes\)"),
    _case("nk-cut-before-data", "failed", "corrupt", r"Nihon Kohden data block 0 needs \d+ bytes, the file has 6459"),
    _case("nk-cut-mid-data", "failed", "corrupt", r"Nihon Kohden data block 0 needs \d+ bytes, .*truncated"),
    _case("nk-waveform-sign-wrong", "failed", "corrupt", r"waveform-block sign is 0, expected 1"),
    _case("nk-control-block-past-eof", "failed", "corrupt", r"block at byte \d+ lies past the end of the file"),
    _case("nk-rate-zero", "failed", "corrupt", r"data block 0: sampling rate 0 Hz, 2 channels"),
    _case("nk-channels-zero", "failed", "corrupt", r"data block 0: sampling rate 256 Hz, 0 channels"),
    # -- FIF and EEGLAB (through MNE): MNE's message, no exception name -------------------------------
    _case("fif-cut-in-header", "failed", "corrupt", r"FIF tag at byte \d+ (needs|is cut off)"),
    _case("fif-cut-mid-data", "failed", "corrupt", r"FIF tag at byte \d+ needs \d+ bytes, the file ends at 41\d+: truncated"),
    _case("fif-cut-at-a-tag", "failed", "corrupt", r"FIF file ends inside \d open blocks \(\d+ bytes\): truncated"),
    _case("set-cut-in-header", "failed", "corrupt", r"^eeglab file could not be parsed \(MNE: .+\)$"),
    _case("set-cut-mid", "failed", "corrupt", r"^eeglab file could not be parsed \(MNE: .+\)$"),
    _case("set-cut-near-end", "failed", "corrupt", r"^eeglab file could not be parsed \(MNE: .+\)$"),
    # -- BrainVision triplets: what MNE would read with a wrong duration is caught before -------------
    _case("bv-cut-mid-sample", "failed", "corrupt", r"data file of \d+ bytes is not a whole number of 8-byte samples"),
    _case("bv-cut-at-sample-marker-beyond", "failed", "corrupt", r"marker lies at sample 8961, past the end of the data \(5120"),
    _case("bv-data-empty", "failed", "corrupt", r"marker lies at sample 8961, past the end of the data \(0 samples\)"),
    _case("bv-channel-count-wrong", "failed", "corrupt", r"declares NumberOfChannels=3 but lists 2 channels"),
    _case("bv-binary-format-unknown", "failed", "corrupt", r"\(MNE: Datatype IEEE_FLOAT_80 is not supported\)"),
    _case("bv-sampling-interval-zero", "failed", "corrupt", r"^brainvision file could not be parsed \(MNE: .+\)$"),
    # -- the file system ---------------------------------------------------------------------------
    _case(UNREADABLE, "failed", "unreadable", r"Permission denied"),
]


# -- the two runs -----------------------------------------------------------------------------------
def _without_read_override() -> list[str] | None:
    """Command prefix under which file permissions apply even to root; ``None`` if there is none."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search"] if setpriv else None


_INGEST = """
import dataclasses, json, sys
from ephys.pipeline.run import ingest
from ephys.schemas import IngestConfig
s = ingest(sys.argv[1], sys.argv[2], config=IngestConfig.model_validate_json(sys.argv[3]), workers=1)
print("SUMMARY " + json.dumps(dataclasses.asdict(s)))
"""


def _ingest_without_read_override(prefix: list[str], archive: Path, out: Path) -> SimpleNamespace:
    """``ingest`` in a child process that cannot read a chmod-000 file; its summary."""
    r = subprocess.run(prefix + [sys.executable, "-c", _INGEST, str(archive), str(out), CONFIG.model_dump_json()],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (line,) = [x for x in r.stdout.splitlines() if x.startswith("SUMMARY ")]
    return SimpleNamespace(**json.loads(line.removeprefix("SUMMARY ")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    archive, clean = root / "archive", root / "clean"
    damaged = write_damaged(archive / "damaged")
    healthy = write_healthy(archive / "healthy")
    write_healthy(clean)
    (archive / "copies").mkdir()
    dup_healthy = shutil.copyfile(healthy["healthy-edf"], archive / "copies" / "same-as-healthy.edf")
    dup_damaged = shutil.copyfile(damaged["edf-cut-mid-record"], archive / "copies" / "same-as-cut.edf")
    (archive / "loop").symlink_to(archive, target_is_directory=True)  # must not be followed

    prefix = _without_read_override()
    locked = None
    if prefix is not None:
        locked = archive / f"{UNREADABLE}.edf"
        locked.write_bytes(healthy["healthy-edf"].read_bytes()[:-1])  # would be 'corrupt' if it were read
        locked.chmod(0o000)
    try:
        if prefix:
            summary = _ingest_without_read_override(prefix, archive, root / "out")
        else:
            summary = ingest(archive, root / "out", config=CONFIG, workers=1)
    finally:
        if locked is not None:
            locked.chmod(0o644)
    clean_summary = ingest(clean, root / "clean-out", config=CONFIG, workers=1)
    return SimpleNamespace(
        archive=archive, out=root / "out", summary=summary, damaged=damaged, healthy=healthy, locked=locked,
        duplicates=[(dup_healthy, healthy["healthy-edf"]), (dup_damaged, damaged["edf-cut-mid-record"])],
        rows=rows_by_sha(f"sqlite:///{root / 'out' / 'catalog.sqlite'}"),
        clean_out=root / "clean-out", clean_summary=clean_summary,
        clean_rows=rows_by_sha(f"sqlite:///{root / 'clean-out' / 'catalog.sqlite'}"),
    )


def _row(runs, case: str):
    if case == UNREADABLE:
        if runs.locked is None:
            pytest.skip("running as root without util-linux setpriv: cannot make a file unreadable")
        rel = os.fsencode(str(runs.locked.relative_to(runs.archive)))  # keyed with the site secret: confirms no guessed path
        key = hmac.new(os.environ["EPHYS_SITE_SECRET"].encode(), b"unhashed\0" + rel, hashlib.sha256).hexdigest()
    elif case.startswith("bv-"):  # a multi-file recording hashes over its members' hashes
        (rec,) = [r for r in discover(runs.damaged[case].parent).recordings if r.files[0] == runs.damaged[case]]
        key = hash_recording([str(f) for f in rec.files])[0]
    else:
        key = sha(runs.damaged[case])
    assert key in runs.rows, f"{case}: no catalog row"
    return runs.rows[key]


# -- (a) every damaged file: a row, a typed code, a reason -------------------------------------------
def test_case_table_covers_the_corpus(runs):
    assert sorted(runs.damaged) == sorted(c.id for c in CASES if c.id != UNREADABLE)
    assert len(CASES) >= 30


@pytest.mark.parametrize("case, status, code, reason", CASES)
def test_damaged_file_outcome(runs, case, status, code, reason):
    row = _row(runs, case)
    got = (row.status, row.failure_code, row.failure_reason)
    assert row.failure_code and row.failure_reason, got
    assert row.failure_code not in GENERIC_CODES and not GENERIC_REASON.search(row.failure_reason), got
    assert (row.status, row.failure_code) == (status, code), got
    assert row.failure_code in KNOWN_CODES, got
    assert re.search(reason, row.failure_reason), got
    assert row.n_epochs == 0 and row.n_packed == 0


@pytest.mark.parametrize("case, text", [
    ("edf-annotation-latin1", LATIN1_TEXT),
    ("edf-annotation-not-utf8", BAD_UTF8.decode("latin-1")),
])
def test_non_utf8_annotation_text_is_decoded(runs, case, text):
    row = _row(runs, case)
    c = Catalog(f"sqlite:///{runs.out / 'catalog.sqlite'}")
    try:
        with c.session() as s:
            texts = list(s.scalars(select(m.Annotation.text).where(m.Annotation.recording_id == row.id)))
    finally:
        c.close()
    assert texts == [text]
    assert row.n_annotations == 1


# -- (b) the run completes and its counts add up ---------------------------------------------------
def test_run_completes_and_counts_add_up(runs):
    s = runs.summary
    files = [*runs.damaged.values(), *runs.healthy.values(), *(copy for copy, _ in runs.duplicates)]
    distinct = len({sha(p) for p in files})  # the three zero-byte files are one content
    n_locked = int(runs.locked is not None)
    assert s.n_ok + s.n_rejected + s.n_failed + s.n_duplicates + s.n_skipped == s.n_discovered
    assert s.n_discovered == len(files) + n_locked  # the symlink loop is not followed
    assert (s.n_ok, s.n_duplicates, s.n_skipped) == (len(runs.healthy), len(files) - distinct, 0)
    assert s.n_rejected + s.n_failed == distinct - len(runs.healthy) + n_locked
    assert len(runs.rows) == distinct + n_locked
    assert len(s.outcomes) == s.n_rejected + s.n_failed  # each with its reason (checked per case above)


# -- (c) healthy files: ingested exactly as without the damaged ones --------------------------------
def test_healthy_files_are_ingested_as_in_a_clean_run(runs):
    assert runs.clean_summary.n_ok == len(runs.healthy) and runs.clean_summary.n_failed == 0
    shards = shard_bytes(runs.out)
    assert shards and shards == shard_bytes(runs.clean_out)
    assert set(runs.clean_rows) == {sha(p) for p in runs.healthy.values()}
    for key, clean in runs.clean_rows.items():
        row = runs.rows[key]
        assert row.status == clean.status == "ok"
        assert (row.n_epochs, row.n_valid_epochs, row.subject) == (clean.n_epochs, clean.n_valid_epochs, clean.subject)
        assert row.n_epochs == 3


# -- (d) nothing half-written ---------------------------------------------------------------------------
def test_no_temporary_files_left(runs):
    for out in (runs.out, runs.clean_out):
        assert not list(out.rglob("*.tmp"))
        assert not list((out / ".spool").iterdir())


# -- (e) same bytes under two paths: one row ----------------------------------------------------------
def test_duplicates_have_one_row(runs):
    for copy, original in runs.duplicates:
        assert copy.read_bytes() == original.read_bytes()
        assert sha(copy) in runs.rows
    counts = table_counts(f"sqlite:///{runs.out / 'catalog.sqlite'}")
    assert counts["recordings"] == len(runs.rows)  # one row per content
    assert counts["epochs"] == 3 * len(runs.healthy)  # the healthy copy is not packed twice


# -- a fractional sampling rate: epochs of floor(30 x 256.02) samples at floor(k x 30 x 256.02) -----------
def test_fractional_sampling_rate_is_processed(tmp_path):
    x = np.random.default_rng(0).normal(0, 20, 12801 * 3)
    p = write_edf(tmp_path / "f.edf", [x, x], ["Fp1", "Cz"], [12801, 12801], record_s=50.0, plus=False)  # 256.02 Hz
    (tmp_path / "spool").mkdir()
    r = process_recording(str(p), "edf", sha(p), p.stat().st_size, CONFIG, str(tmp_path / "spool"), b"secret")
    assert r.failure is None and r.n_epochs == 5

