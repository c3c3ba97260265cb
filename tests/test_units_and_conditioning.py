"""Channel names, conditioning, montage, QC flags, pseudonyms."""

from __future__ import annotations

import numpy as np
import pytest

from ephys.ingest.channels import parse_label, unit_to_uv
from ephys.ingest.condition import condition, fir_kernel, lowpass_edge, notch_freqs, polyphase_resample, resample_ratio
from ephys.ingest.identity import pseudonym, scrub_text, secret_fingerprint
from ephys.ingest.montage import REGION_NAMES, regional8
from ephys.qc.features import channel_features


@pytest.mark.parametrize(
    "label, name, standard, bipolar",
    [
        ("Fc5.", "FC5", True, False),
        ("T7..", "T7", True, False),
        ("EEG Fp1-Ref", "Fp1", True, False),
        ("C3-A1", "C3", True, False),
        ("FP1-A1", "Fp1", True, False),
        ("EEG T3-LE", "T7", True, False),
        ("T5", "P7", True, False),
        ("EEG Fpz-Cz", "Fpz-Cz", False, True),
        ("EOG1-A1", "EOG1-A1", False, False),
        ("EMG submental", "EMG submental", False, False),
    ],
)
def test_labels(label, name, standard, bipolar):
    p = parse_label(label)
    assert (p.name, p.is_standard, p.is_bipolar) == (name, standard, bipolar)


def test_units():
    assert [unit_to_uv(u) for u in ("uV", "UV", "µV", "mV", "V", "nV", "%", "")] == [1, 1, 1, 1e3, 1e6, 1e-3, None, None]


def test_resample_ratios_and_edges():
    assert resample_ratio(256, 250) == (125, 128)
    assert resample_ratio(512, 250) == (125, 256)
    assert resample_ratio(160, 250) == (25, 16)
    assert resample_ratio(5000, 250) == (1, 20)
    assert lowpass_edge(100, 1000) == 100 and lowpass_edge(100, 100) == 40
    assert notch_freqs(50, 100) == [50] and notch_freqs(60, 100) == [60] and notch_freqs(50, 40) == []
    assert notch_freqs(50, 150) == [50, 100]


def _amp(x, sfreq, f):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) / (np.hanning(len(x)).sum() / 2)
    return spec[np.argmin(np.abs(np.fft.rfftfreq(len(x), 1 / sfreq) - f))]


def test_condition_keeps_eeg_removes_hum_and_drift():
    sfreq, n = 256.0, 256 * 60
    t = np.arange(n) / sfreq
    x = 40 * np.sin(2 * np.pi * 10 * t) + 30 * np.sin(2 * np.pi * 50 * t) + 500 + 100 * t / 60
    y = condition(x[None], sfreq, l_freq=0.5, h_freq=100, line_freq=50, sfreq_out=250)[0]
    assert y.dtype == np.float32 and y.shape == (int(np.ceil(n * 250 / 256)),)
    mid = y[2500:-2500]
    assert abs(_amp(mid, 250, 10) / 40 - 1) < 0.02
    assert _amp(mid, 250, 50) < 30 * 10 ** (-30 / 20)  # at least 30 dB down
    assert abs(mid.mean()) < 1.0  # drift and offset gone


def test_regional8_average_reference_and_mask():
    electrodes = ["Fp1", "F3", "C3", "O1", "O2", "Fz"]
    x = np.array([[1.0], [3.0], [5.0], [7.0], [9.0], [11.0]]) * np.ones((6, 4))
    out, mask = regional8(x, electrodes)
    car = x[:, 0] - x[:, 0].mean()  # mean 6
    expect = {"L-frontal": (car[0] + car[1]) / 2, "L-central": car[2], "occipital": (car[3] + car[4]) / 2, "midline": car[5]}
    assert mask == [name in expect for name in REGION_NAMES]
    for i, name in enumerate(REGION_NAMES):
        np.testing.assert_allclose(out[i], expect.get(name, 0.0), rtol=1e-6, atol=1e-6)  # float32 weights


def test_qc_flags():
    rng = np.random.default_rng(1)
    ep = rng.normal(0, 20, (6, 3000))
    ep[1] = 0.1  # flat
    ep[2, :100] = 3276.7  # clipped burst at the upper rail (3.3 % of samples)
    ep[3, 5] = np.nan
    ep[4, :20] = -3276.8  # at the lower rail, but only 0.7 % of samples
    ep[5, ::50] = -3276.78  # within half a step of the lower rail: 2 %
    f = channel_features(ep, 100.0, (-3276.8, 3276.7, 0.05), line_freq=50, flat_uv=0.5, clip_fraction=0.01)
    assert f["flat"].tolist() == [False, True, False, False, False, False]
    assert f["clipped"].tolist() == [False, False, True, False, False, True]
    assert f["nonfinite"].tolist() == [False, False, False, True, False, False]
    assert f["sd_uv"][1] == 0.0 and abs(f["sd_uv"][0] / 20 - 1) < 0.05
    assert np.isnan(f["emg_ratio"][1])  # a constant epoch has no spectrum to take a ratio of
    no_rails = channel_features(ep, 100.0, None, line_freq=50, flat_uv=0.5, clip_fraction=0.01)
    assert not no_rails["clipped"].any()


@pytest.mark.parametrize("sfreq", [100.0, 128.0, 160.0, 200.0, 256.0, 256.02, 500.0, 512.0, 1000.0, 1024.0, 5000.0])
def test_polyphase_resample_equals_scipy(sfreq):
    """The matrix-product resampler gives scipy.signal.resample_poly's output, ends included."""
    from scipy.signal import resample_poly

    up, down = resample_ratio(sfreq, 250.0)
    rng = np.random.default_rng(int(sfreq))
    for n in (0, 1, 7, 333, int(40 * sfreq) + 17):
        x = (rng.normal(0, 50, (3, n)) + 1e3).astype(np.float32)  # with a DC offset, as raw EEG has
        want = resample_poly(x, up, down, axis=-1)
        got = polyphase_resample(x, up, down)
        assert got.dtype == np.float32 and got.shape == want.shape == (3, -(-n * up // down))
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)  # float32 rounding of values near 1,000 µV


def test_pseudonyms_and_scrubbing():
    a = pseudonym(b"k1", "PAT-0042", "ff" * 32)
    assert a == pseudonym(b"k1", "PAT-0042", "00" * 32) and a.startswith("sub-") and len(a) == 20
    assert a != pseudonym(b"k2", "PAT-0042", "ff" * 32)
    assert pseudonym(b"k1", "", "aa" * 32) != pseudonym(b"k1", "", "bb" * 32)  # no ID: one subject per recording
    assert "PAT" not in a and secret_fingerprint(b"k1") != secret_fingerprint(b"k2")
    text, n = scrub_text("Anfall, Pat. Müller Hans am 03.04.2021 gesehen", ["Hans Müller"])
    assert text == "Anfall, Pat. [name] [name] am [date] gesehen" and n == 3


@pytest.mark.parametrize("text,expected", [
    ("Zwetschgenbaum_Kunigunde seizure", "[name] seizure"),  # underscores separate words
    ("called Meier-Zwetschgenbaum (tech7)", "called [name] ([name])"),  # hyphenated name; login with a digit
    ("MRN PXQ7731904 reviewed", "MRN [id] reviewed"),
    ("O'Brien awake", "[name] awake"),
    ("seen by m.oberhuber", "seen by [name]"),
    ("Anfall am 12. März 2019", "Anfall am [date]"),
    ("seizure 12 March 2019", "seizure [date]"),
    ("seizure on March 12, 2019", "seizure on [date]"),
    ("EEG 12 MAR 2019 and 12-mar-19", "EEG [date] and [date]"),
    ("Kontrolle 20190312", "Kontrolle [date]"),
    ("Kontrolle vom 12.03. ok", "Kontrolle vom [date] ok"),
    ("Mayer sleeps; Maya awake; spike 3 Hz, 10 s", "[name] sleeps; Maya awake; spike 3 Hz, 10 s"),  # no partial words
    ("Hyperventilation 3 min, Photic 10 Hz", "Hyperventilation 3 min, Photic 10 Hz"),  # clinical text untouched
])
def test_scrub_text_names_ids_dates(text, expected):
    names = ["Zwetschgenbaum_Kunigunde", "Meier-Zwetschgenbaum", "O'Brien", "tech7", "m.oberhuber", "Mayer"]
    out, n = scrub_text(text, names, ["PXQ7731904"])
    assert out == expected and (n > 0) == (out != text)


def test_subject_key_ages_and_date_shift():
    from datetime import datetime, timedelta

    from ephys.ingest.identity import age_years, date_shift, parse_birthdate, shifted_start, subject_key

    # Micromed stores no ID: names + birth date identify the patient; placeholders never do.
    k = subject_key("", ["Müller", "Hans"], "1951-05-02")
    assert k == subject_key("", ["hans", "MÜLLER"], "02.05.1951") and k != subject_key("", ["Hans Müller"], "1951-05-03")
    assert subject_key("", ["Hans Müller"], None) is None and subject_key("X", ["No_Name"], "1951-05-02") is None
    assert subject_key("No_Name", [], None) is None and subject_key("PAT-1", [], None) == "patient\0PAT-1"
    assert pseudonym(b"k", "", "aa" * 32, names=["Hans Müller"], birthdate="02-MAY-1951") == \
        pseudonym(b"k", "", "bb" * 32, names=["Müller, Hans"], birthdate="1951-05-02")
    assert [parse_birthdate(t) for t in ("02-MAY-1951", "1951-05-02", "02.05.1951", "31.02.1951", "X", None)] == \
        [parse_birthdate("1951-05-02")] * 3 + [None] * 3
    start = datetime(2020, 5, 1, 9, 30)
    assert age_years("02-MAY-1951", start) == 68 and age_years("01-MAY-1951", start) == 69
    assert age_years("1901-01-01", start) == 90  # HIPAA: ages over 89 are aggregated
    assert age_years("2021-01-01", start) is None and age_years(None, start) is None
    # Shifts: keyed per subject, whole weeks 100-200 years ahead; time of day, weekday and intervals kept.
    a, b = shifted_start(b"k", "sub-1", start), shifted_start(b"k", "sub-1", start + timedelta(days=3, hours=2))
    assert b - a == timedelta(days=3, hours=2) and a.time() == start.time() and a.weekday() == start.weekday()
    assert timedelta(days=36500) < a - start < timedelta(days=73100)
    assert date_shift(b"k", "sub-1") != date_shift(b"k", "sub-2") and date_shift(b"k", "sub-1") != date_shift(b"j", "sub-1")


def test_annotation_authors_become_pseudonyms_and_leave_text():
    from ephys.pipeline.task import _scrubbed
    from ephys.schemas import Annotation

    anns = [Annotation(onset_s=1, duration_s=0, text="Anfall, gesehen von Dr. Huber", source="nicolet", author="Huber"),
            Annotation(onset_s=2, duration_s=0, text="eyes closed", source="nicolet", author="HUBER"),
            Annotation(onset_s=3, duration_s=0, text="Muster Anna sleeps", source="edf+")]
    from ephys.ingest.readers.base import PatientInfo

    out, n = _scrubbed(anns, PatientInfo(names=["Anna Muster"]), b"site")
    assert [a.text for a in out] == ["Anfall, gesehen von Dr. [name]", "eyes closed", "[name] [name] sleeps"] and n == 3
    assert out[0].author == out[1].author and out[0].author.startswith("author-") and "uber" not in out[0].author
    assert out[2].author is None


@pytest.mark.parametrize("sfreq,line_freq,h_freq", [(256.0, 50, 100), (512.0, 50, 100), (500.0, 60, 100), (200.0, 50, 70)])
def test_one_pass_filter_equals_mne_band_pass_then_notch(sfreq, line_freq, h_freq):
    """The single float32 pass with the combined kernel gives what filtering twice with MNE gives
    (mne.filter.filter_data, then mne.filter.notch_filter, float64, reflect_limited padding)."""
    import mne

    n = int(sfreq * 120)
    t = np.arange(n) / sfreq
    rng = np.random.default_rng(3)
    x = (np.cumsum(rng.normal(0, 2, n)) + rng.normal(0, 20, n) + 30 * np.sin(2 * np.pi * line_freq * t)
         + 40 * np.sin(2 * np.pi * 10 * t) + 300)[None]
    h_edge = lowpass_edge(h_freq, sfreq)
    ref = mne.filter.filter_data(x, sfreq, 0.5, h_edge, method="fir", phase="zero", fir_design="firwin",
                                 pad="reflect_limited", verbose="error")
    freqs = notch_freqs(line_freq, h_edge)
    if freqs:
        ref = mne.filter.notch_filter(ref, sfreq, freqs, method="fir", phase="zero", fir_design="firwin",
                                      pad="reflect_limited", verbose="error")
    got = condition(x, sfreq, l_freq=0.5, h_freq=h_freq, line_freq=line_freq, sfreq_out=sfreq)
    assert got.dtype == np.float32 and got.shape == x.shape
    rms = ref.std()
    edge = int(10 * sfreq)  # the two passes pad twice; away from the ends only rounding differs
    assert np.abs(got - ref)[:, edge:-edge].max() < 2e-4 * rms
    assert np.abs(got - ref).max() < 0.05 * rms
    assert fir_kernel(sfreq, 0.5, float(h_freq), float(line_freq)) is fir_kernel(sfreq, 0.5, float(h_freq), float(line_freq))


def test_condition_short_and_empty_inputs():
    for n in (0, 1, 2, 50):
        y = condition(np.ones((2, n)), 256.0, l_freq=0.5, h_freq=100, line_freq=50, sfreq_out=250)
        assert y.shape == (2, int(np.ceil(n * 250 / 256))) and np.isfinite(y).all()
