"""``create_manifest`` / ``show_manifest`` and ``ephys manifest``."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ephys
import ephys.cli
from ephys.catalog import models as m
from ephys.catalog.db import Catalog
from ephys.errors import ManifestError
from ephys.manifest import create_manifest, show_manifest
from ephys.schemas.manifest import MANIFEST_FORMAT, Manifest, ManifestShard
from tests.catalog_helpers import REGIONS, SHA, SHARD_NAMES, key, populate


@pytest.fixture
def cat(catalog_url, tmp_path):
    catalog = Catalog(catalog_url)
    catalog.info = populate(catalog, tmp_path)
    yield catalog
    catalog.close()


def k(*names: str) -> list[str]:
    return [key(n[0], int(n[1:])) for n in names]


def tar_keys(path: Path) -> list[str]:
    """Sample keys of a shard in member order."""
    with tarfile.open(path) as tar:
        out = []
        for name in tar.getnames():
            stem = name.split(".", 1)[0]
            if not out or out[-1] != stem:
                out.append(stem)
        return out


def test_manifest_content(cat, tmp_path):
    info = cat.info
    out = tmp_path / "manifests" / "all.json"
    man = create_manifest(cat, [], out)
    assert out.is_file()
    assert man.format == MANIFEST_FORMAT
    assert man.ephys_version == ephys.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", man.created_at)
    assert man.query == []
    assert man.montage == "regional8"
    assert man.channel_names == REGIONS
    assert man.sfreq == 250.0
    assert man.n_samples == 7500
    assert man.counts == {"epochs": 7, "recordings": 2, "subjects": 2, "shards": 2}
    assert man.shards == [
        ManifestShard(
            url=str(info.shards_root / SHARD_NAMES[0]),
            sha256=info.shard_sha256[0],
            n_samples=4,
            keys=k("a0", "a1", "a2", "b0"),
        ),
        ManifestShard(
            url=str(info.shards_root / SHARD_NAMES[1]),
            sha256=info.shard_sha256[1],
            n_samples=3,
            keys=k("b1", "b2", "b3"),
        ),
    ]
    assert man.content_hash == man.compute_content_hash()
    assert len(man.content_hash) == 64
    assert Manifest.load(out) == man
    # the keys are the members of the shards, in member order
    for shard in man.shards:
        assert tar_keys(Path(shard.url)) == shard.keys
        assert hashlib.sha256(Path(shard.url).read_bytes()).hexdigest() == shard.sha256


def test_manifest_selection(cat, tmp_path):
    info = cat.info
    where = ["valid = true", "max_abs_uv < 200"]
    man = create_manifest(cat, where, tmp_path / "valid.json")
    assert man.query == where
    assert man.counts == {"epochs": 4, "recordings": 2, "subjects": 2, "shards": 2}
    assert [(s.sha256, s.n_samples, s.keys) for s in man.shards] == [
        (info.shard_sha256[0], 4, k("a0", "a2", "b0")),
        (info.shard_sha256[1], 3, k("b1")),
    ]
    # one shard only
    man = create_manifest(cat, ["subject = S01"], tmp_path / "s01.json")
    assert man.counts == {"epochs": 3, "recordings": 1, "subjects": 1, "shards": 1}
    assert [(s.sha256, s.keys) for s in man.shards] == [(info.shard_sha256[0], k("a0", "a1", "a2"))]
    man = create_manifest(cat, ["annotation ~ anfall"], tmp_path / "seizure.json")
    assert [s.keys for s in man.shards] == [k("a2", "b0"), k("b1")]
    assert man.counts == {"epochs": 3, "recordings": 2, "subjects": 2, "shards": 2}


def test_manifest_deterministic(cat, tmp_path):
    where = ["valid = true"]
    first = create_manifest(cat, where, tmp_path / "one.json")
    second = create_manifest(cat, where, tmp_path / "sub" / "two.json")
    assert first.content_hash == second.content_hash
    assert first.model_dump(exclude={"created_at"}) == second.model_dump(exclude={"created_at"})
    # a different selection or query gives another hash
    other = create_manifest(cat, ["valid = false"], tmp_path / "three.json")
    assert other.content_hash != first.content_hash
    assert create_manifest(cat, [], tmp_path / "all.json").content_hash != first.content_hash


def test_manifest_hash_survives_moving_shards(cat, tmp_path):
    info = cat.info
    before = create_manifest(cat, [], tmp_path / "before.json")
    moved = tmp_path / "elsewhere" / "shards"
    moved.parent.mkdir()
    shutil.move(str(info.shards_root), str(moved))
    cat.set_meta("shards_root", str(moved))
    out = tmp_path / "manifests" / "after.json"
    after = create_manifest(cat, [], out, relative_urls=True)
    assert after.content_hash == before.content_hash
    assert [s.url for s in after.shards] == [f"../elsewhere/shards/{n}" for n in SHARD_NAMES]
    loaded = Manifest.load(out)
    assert [str(Path(u).resolve()) for u in loaded.resolve_urls(out)] == [str(moved / n) for n in SHARD_NAMES]
    assert all(Path(u).is_file() for u in loaded.resolve_urls(out))
    # the manifest folder and the shards can move together
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.move(str(tmp_path / "manifests"), str(bundle / "manifests"))
    shutil.move(str(tmp_path / "elsewhere"), str(bundle / "elsewhere"))
    relocated = bundle / "manifests" / "after.json"
    assert Manifest.load(relocated).content_hash == before.content_hash
    assert show_manifest(relocated)["shards"][1]["resolved"] == str(bundle / "elsewhere" / "shards" / SHARD_NAMES[1])
    assert all(Path(u).is_file() for u in Manifest.load(relocated).resolve_urls(relocated))


def test_manifest_mixed_montage_refused(cat, tmp_path):
    with cat.session.begin() as s:
        b = s.query(m.Recording).filter(m.Recording.sha256 == SHA["b"]).one()
        b.montage = "native"
        b.output_channels_json = json.dumps(["Fp1", "Fp2", "C3", "C4", "O1", "O2"])
    out = tmp_path / "mixed.json"
    with pytest.raises(ManifestError) as err:
        create_manifest(cat, [], out)
    assert str(err.value) == (
        "the selection mixes montages: native (1 recordings), regional8 (1 recordings); a manifest needs one "
        'montage and channel list. Add a clause that picks one, e.g. --where "montage = native"'
    )
    assert not out.exists()
    man = create_manifest(cat, ["montage = regional8"], out)
    assert man.counts == {"epochs": 3, "recordings": 1, "subjects": 1, "shards": 1}
    man = create_manifest(cat, ["montage = native"], out)
    assert man.montage == "native"
    assert man.channel_names == ["Fp1", "Fp2", "C3", "C4", "O1", "O2"]
    assert [s.keys for s in man.shards] == [k("b0"), k("b1", "b2", "b3")]


def test_manifest_mixed_channel_sets_refused(cat, tmp_path):
    native19 = ["Fp1", "Fp2", "F7", "F3", "Fz", "F4", "F8", "T3", "C3", "Cz", "C4", "T4", "T5", "P3", "Pz", "P4", "T6", "O1", "O2"]
    native21 = native19 + ["A1", "A2"]
    with cat.session.begin() as s:
        for sha, chans in ((SHA["a"], native19), (SHA["b"], native21)):
            r = s.query(m.Recording).filter(m.Recording.sha256 == sha).one()
            r.montage = "native"
            r.output_channels_json = json.dumps(chans)
    with pytest.raises(ManifestError) as err:
        create_manifest(cat, ["valid = true"], tmp_path / "m.json")
    assert str(err.value) == (
        "the selection mixes 2 output channel sets of montage native: "
        "19 channels [Fp1,Fp2,F7,F3,...] (1 recordings); 21 channels [Fp1,Fp2,F7,F3,...] (1 recordings). "
        'Add a clause that picks one, e.g. --where "n_eeg_channels = 19"'
    )
    man = create_manifest(cat, ["valid = true", "n_eeg_channels = 21"], tmp_path / "m.json")
    assert man.channel_names == native21
    assert man.counts == {"epochs": 3, "recordings": 1, "subjects": 1, "shards": 2}


def test_manifest_empty_selection_refused(cat, tmp_path):
    out = tmp_path / "empty.json"
    with pytest.raises(ManifestError) as err:
        create_manifest(cat, ["subject = nobody", "valid = true"], out)
    assert str(err.value) == (
        "the selection is empty: no epoch of an 'ok' recording matches subject = nobody AND valid = true; "
        "check the clauses with `ephys catalog query`"
    )
    assert not out.exists()
    # rejected recordings have no epochs in the corpus
    with pytest.raises(ManifestError, match="the selection is empty"):
        create_manifest(cat, ["status = rejected"], out)


def test_manifest_bad_clause(cat, tmp_path):
    with pytest.raises(ValueError, match="unknown field 'subjekt'"):
        create_manifest(cat, ["subjekt = S01"], tmp_path / "m.json")


def test_manifest_without_shards_root(cat, tmp_path):
    with cat.session.begin() as s:
        s.delete(s.get(m.Meta, "shards_root"))
    with pytest.raises(ManifestError, match=r"does not record its shard folder \(meta 'shards_root'\)"):
        create_manifest(cat, [], tmp_path / "m.json")


def test_manifest_layout_from_latest_run(cat, tmp_path):
    with cat.session.begin() as s:
        s.get(m.Run, cat.info.run_id).config_json = json.dumps({"sfreq": 128.0, "epoch_s": 30.0})
    man = create_manifest(cat, [], tmp_path / "m.json")
    assert (man.sfreq, man.n_samples) == (128.0, 3840)
    # a later run without those keys: defaults
    with cat.session.begin() as s:
        run = s.get(m.Run, cat.info.run_id)
        s.add(
            m.Run(
                started_at=run.started_at, status="failed", code_version="0.1.0", processing_hash=run.processing_hash,
                config_json="{}", n_discovered=0, n_skipped=0, n_ok=0, n_rejected=0, n_failed=0, eeg_hours=0.0,
                wall_s=0.0,
            )
        )
    man = create_manifest(cat, [], tmp_path / "m.json")
    assert (man.sfreq, man.n_samples) == (250.0, 7500)


def test_edited_manifest_fails_to_load(cat, tmp_path):
    out = tmp_path / "m.json"
    create_manifest(cat, [], out)
    data = json.loads(out.read_text())
    runs = data["shards"][0]["runs"]  # drop the shard's last selected key
    if runs[-1][3] > runs[-1][2]:
        runs[-1][3] -= 1
    else:
        runs.pop()
    out.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="content hash does not match: the manifest was edited"):
        Manifest.load(out)
    with pytest.raises(ManifestError, match="content hash does not match"):
        show_manifest(out)
    # editing only the location keeps it valid
    create_manifest(cat, [], out)
    data = json.loads(out.read_text())
    data["shards"][0]["url"] = "/somewhere/else.tar"
    out.write_text(json.dumps(data))
    assert Manifest.load(out).shards[0].url == "/somewhere/else.tar"


def test_show_manifest(cat, tmp_path):
    info = cat.info
    out = tmp_path / "m.json"
    man = create_manifest(cat, ["valid = true"], out, relative_urls=True)
    (info.shard_paths[1]).unlink()
    assert show_manifest(out) == {
        "path": str(out),
        "format": MANIFEST_FORMAT,
        "ephys_version": ephys.__version__,
        "created_at": man.created_at,
        "content_hash": man.content_hash,
        "query": ["valid = true"],
        "montage": "regional8",
        "channel_names": REGIONS,
        "sfreq": 250.0,
        "n_samples": 7500,
        "lowpass_hz": 100.0,
        "counts": {"epochs": 5, "recordings": 2, "subjects": 2, "shards": 2},
        "n_epochs": 5,
        "shards": [
            {
                "url": f"shards/{SHARD_NAMES[0]}",
                "resolved": str(info.shards_root / SHARD_NAMES[0]),
                "exists": True,
                "sha256": info.shard_sha256[0],
                "n_samples": 4,
                "n_selected": 3,
            },
            {
                "url": f"shards/{SHARD_NAMES[1]}",
                "resolved": str(info.shards_root / SHARD_NAMES[1]),
                "exists": False,
                "sha256": info.shard_sha256[1],
                "n_samples": 3,
                "n_selected": 2,
            },
        ],
        "missing_shards": 1,
    }
    with pytest.raises(ManifestError, match="no such manifest"):
        show_manifest(tmp_path / "none.json")


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


@pytest.fixture
def cli():
    ephys.cli._register()
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(ephys.cli.app, [str(a) for a in args])

    return invoke


def test_cli_manifest_create_and_show(cat, cli, tmp_path):
    out = tmp_path / "m.json"
    res = cli("manifest", "create", "--catalog", cat.url, "--where", "valid = true", "-w", "subject = S02", "-o", out)
    assert res.exit_code == 0, res.output
    man = Manifest.load(out)
    assert man.query == ["valid = true", "subject = S02"]
    assert man.counts == {"epochs": 3, "recordings": 1, "subjects": 1, "shards": 2}
    assert res.stdout == (
        f"wrote {out}: 3 epochs from 1 recordings, 1 subjects, 2 shards\ncontent hash: {man.content_hash}\n"
    )
    assert man.shards[0].url == str(cat.info.shards_root / SHARD_NAMES[0])

    res = cli("manifest", "show", out, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == show_manifest(out)

    res = cli("manifest", "show", out)
    assert res.exit_code == 0, res.output
    assert man.content_hash in res.stdout
    assert "valid = true AND subject = S02" in res.stdout
    assert "low-pass edge" in res.stdout and "100 Hz" in res.stdout


def test_cli_manifest_create_relative_json(cat, cli, tmp_path):
    out = tmp_path / "m.json"
    res = cli("manifest", "create", "--catalog", cat.url, "-o", out, "--relative-urls", "--json")
    assert res.exit_code == 0, res.output
    man = Manifest.load(out)
    assert json.loads(res.stdout) == {
        "path": str(out),
        "counts": {"epochs": 7, "recordings": 2, "subjects": 2, "shards": 2},
        "content_hash": man.content_hash,
    }
    assert [s.url for s in man.shards] == [f"shards/{n}" for n in SHARD_NAMES]
    assert man.content_hash == create_manifest(cat, [], tmp_path / "abs.json").content_hash


def test_cli_manifest_errors(cat, cli, tmp_path):
    out = tmp_path / "m.json"
    res = cli("manifest", "create", "--catalog", cat.url, "--where", "subject = nobody", "-o", out)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: the selection is empty")
    assert not out.exists()

    res = cli("manifest", "create", "--catalog", cat.url, "--where", "n_eeg_channels ~ 19", "-o", out)
    assert res.exit_code == 2
    assert res.stderr.startswith("error: operator '~' does not apply to n_eeg_channels")

    res = cli("manifest", "show", tmp_path / "none.json")
    assert res.exit_code == 2
    assert res.stderr == f"error: {tmp_path / 'none.json'}: no such manifest\n"

    create_manifest(cat, [], out)
    data = json.loads(out.read_text())
    data["montage"] = "native"
    out.write_text(json.dumps(data))
    res = cli("manifest", "show", out, "--json")
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr == f"error: {out}: content hash does not match: the manifest was edited\n"
    assert "Traceback" not in res.output


def test_keys_and_runs_round_trip_and_membership():
    from ephys.schemas.manifest import KeySet, key_runs, run_keys

    a, b = "a" * 16 + "_", "b" * 16 + "_"
    keys = [f"{a}{i:06d}" for i in (0, 1, 2, 5, 6, 9)] + [f"{b}{i:06d}" for i in (9, 10)] + [f"{a}{i:06d}" for i in (3, 4)]
    keys += ["x", "y9", "y10"]
    runs = key_runs(keys)
    # 0,1,2,5,6,9 of a: one run over 0..9, bits 0,1,2,5,6,9 = 0b1001100111 little-endian -> bytes 0x67 0x02
    assert runs == [(a, 6, 0, 9, "ZwI="), (b, 6, 9, 10, ""), (a, 6, 3, 4, ""), ("x", 0, 0, 0, ""), ("y", 1, 9, 9, ""),
                    ("y", 2, 10, 10, "")]
    assert list(run_keys(runs)) == keys
    assert ManifestShard(url="u", sha256="s", n_samples=20, keys=keys).n_selected == len(keys)
    ks = KeySet(runs)
    assert len(ks) == len(keys) and all(k in ks for k in keys)
    assert not any(k in ks for k in [f"{a}000007", f"{a}000010", f"{a}00001", f"{b}000008", "x1", "y09", "z", 7])


def test_a_format_1_manifest_still_loads_with_its_own_hash(cat, tmp_path):
    """A manifest written by earlier ephys (keys listed one by one, ``ephys-manifest/1``) loads, verifies
    against the hash those versions computed, and selects the same keys; saving it writes format 2."""
    import hashlib

    new = create_manifest(cat, [], tmp_path / "m2.json")
    v1 = json.loads((tmp_path / "m2.json").read_text())
    v1["format"] = "ephys-manifest/1"
    for sh in v1["shards"]:
        sh["keys"] = list(ManifestShard(**{k: v for k, v in sh.items()}).keys)
        del sh["runs"]
    body = {k: v1[k] for k in ("format", "query", "montage", "channel_names", "sfreq", "n_samples")}
    body["shards"] = [(sh["sha256"], sh["keys"]) for sh in v1["shards"]]  # the hash earlier versions computed
    v1["content_hash"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (tmp_path / "m1.json").write_text(json.dumps(v1, indent=2))
    old = Manifest.load(tmp_path / "m1.json")
    assert old.format == "ephys-manifest/1" and [s.keys for s in old.shards] == [s.keys for s in new.shards]
    assert old.n_epochs == new.n_epochs
    old.save(tmp_path / "m3.json")
    assert Manifest.load(tmp_path / "m3.json").content_hash == new.content_hash


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_joined_key_runs_equal_key_runs_of_the_ordered_keys(data):
    """The vectorised runs of a database's unordered (shard, recording) aggregate equal key_runs of the
    keys in epoch order: ephys's own keys (one prefix, six digits, any subset, any order) and others
    (mixed prefixes and widths, no digits, non-ASCII, numbers out of order)."""
    from ephys.schemas.manifest import joined_key_runs, key_runs

    if data.draw(st.booleans()):  # one recording's epochs in a shard, as ephys writes them
        prefix = data.draw(st.sampled_from(["3f9a0c2b4d6e8f10_", "ab_", "x"]))
        numbers = sorted(data.draw(st.sets(st.integers(0, 3000), min_size=1, max_size=60)))
        keys = [f"{prefix}{n:06d}" for n in numbers]
        order = list(range(len(keys)))
        if data.draw(st.booleans()):  # key numbers not following epoch order (not ephys's, but exact)
            order = data.draw(st.permutations(order))
    else:
        alphabet = st.sampled_from(list("ab_9012é"))
        keys = data.draw(st.lists(st.text(alphabet, min_size=1, max_size=6), min_size=1, max_size=30, unique=True))
        order = data.draw(st.permutations(range(len(keys))))
    perm = data.draw(st.permutations(range(len(keys))))  # the aggregate's row order is arbitrary
    joined = ",".join(keys[i] for i in perm)
    ranks = ",".join(str(order[i]) for i in perm)
    by_order = [kk for _, kk in sorted(zip(order, keys))]
    assert joined_key_runs(joined, ranks) == key_runs(by_order)


@pytest.mark.parametrize("where", [[], ["valid = true"], ["subject = S02"], ["max_abs_uv < 100"], ["annotation ~ anfall"]])
def test_manifest_runs_equal_the_runs_of_the_selected_rows(cat, tmp_path, where):
    """The manifest built from database aggregates holds, shard by shard, key_runs of the rows
    select_epochs returns one by one (shard order, recording SHA-256, epoch index)."""
    from ephys.catalog.queries import select_epochs
    from ephys.schemas.manifest import key_runs

    rows = select_epochs(cat, where)
    by_shard: dict[str, list[str]] = {}
    for r in rows:
        by_shard.setdefault(r.shard_name, []).append(r.key)
    man = create_manifest(cat, where, tmp_path / "m.json")
    assert [Path(s.url).name for s in man.shards] == list(by_shard)
    assert [s.runs for s in man.shards] == [[tuple(r) for r in key_runs(v)] for v in by_shard.values()]
    assert man.n_epochs == len(rows) == man.counts["epochs"]


def test_manifest_lowpass_is_the_lowest_edge_of_its_recordings(cat, tmp_path, caplog):
    """``lowpass_hz``: min over the selected recordings of ingest's edge min(h_freq, 0.4 x sfreq); the fixture's
    ok recordings are sampled at 256 and 512 Hz, the run's h_freq is the default 100 Hz.  Edges that differ are
    warned about, with a clause that leaves the low-rate recordings out."""
    out = tmp_path / "m.json"
    with caplog.at_level(logging.WARNING, logger="ephys.manifest.create"):
        base = create_manifest(cat, [], out)
    assert base.lowpass_hz == 100.0 and "low-pass edges" not in caplog.text  # 256 and 512 Hz: both at 100 Hz
    with cat.session.begin() as s:
        s.query(m.Recording).filter_by(sha256=SHA["a"]).one().sfreq = 50.0  # as the DREAMS excerpt 3
    with caplog.at_level(logging.WARNING, logger="ephys.manifest.create"):
        man = create_manifest(cat, [], out)
    assert man.lowpass_hz == 20.0
    assert "mixes low-pass edges: 20 Hz (1 recordings), 100 Hz (1 recordings)" in caplog.text
    assert '--where "sfreq > 50"' in caplog.text
    assert create_manifest(cat, ["sfreq > 50"], tmp_path / "kept.json").lowpass_hz == 100.0  # the clause does it
    assert man.content_hash == base.content_hash  # the same selection: the edge is not part of the hash
    assert Manifest.load(out).lowpass_hz == 20.0
    assert create_manifest(cat, ["sfreq = 512"], out).lowpass_hz == 100.0  # recording a is not selected
    with cat.session.begin() as s:
        s.get(m.Run, cat.info.run_id).config_json = json.dumps({"sfreq": 250.0, "epoch_s": 30.0, "h_freq": 30.0})
    assert create_manifest(cat, ["sfreq = 512"], out).lowpass_hz == 30.0
    with cat.session.begin() as s:
        s.query(m.Recording).filter_by(sha256=SHA["b"]).one().sfreq = None  # a catalog without the figure
    assert create_manifest(cat, ["format != edf"], out).lowpass_hz is None  # recording b alone
