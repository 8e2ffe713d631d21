"""Output a person reads: scores named as they are elsewhere, files written like any other file,
the command line's version and table, curves on the rate scale.

Each test pins one way a first reading could mislead (issue 18): a "pseudo-R2" that is not
McFadden's, output files only their owner can read, a comparison table whose headers are cut to
the same text, a p-value printed as 0, a tuning curve that cannot be compared with pynapple's.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pynapple as nap
import pytest

import glmformula as gf

ROOT = Path(__file__).resolve().parents[2]
BIN = 0.02


def _recording(seed: int = 0, duration: float = 300.0) -> dict:
    """Two units tuned to an angle (one strongly, one weakly) and a speed, 300 s."""
    rng = np.random.default_rng(seed)
    t = np.arange(0.0, duration, 0.01)
    support = nap.IntervalSet(0.0, duration)
    angle = np.mod(np.cumsum(rng.normal(0, 0.05, len(t))), 2 * np.pi)
    speed = np.abs(10 + np.cumsum(rng.normal(0, 0.3, len(t))) % 20)
    units = {}
    for u, (depth, base) in enumerate([(2.0, 5.0), (0.4, 8.0)]):
        rate = base * np.exp(depth * np.cos(angle - 1.0 - 2 * u) + 0.02 * (speed - 10))
        counts = rng.poisson(rate * 0.01)
        units[u] = nap.Ts(np.sort(np.repeat(t, counts) + rng.uniform(0, 0.01, counts.sum())))
    return {"spikes": nap.TsGroup(units, time_support=support),
            "hd": nap.Tsd(t=t, d=angle, time_support=support),
            "speed": nap.Tsd(t=t, d=speed, time_support=support)}


@pytest.fixture(scope="module")
def recording():
    return _recording()


@pytest.fixture(scope="module")
def fitted(recording):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gf.fit("spikes ~ cyclic(hd, 8) + speed", recording, bin_size=BIN)


# -- 1. scores ------------------------------------------------------------------------------------
def _counts_and_expected(res, data):
    design = res.design(data)
    rows = design.rows
    counts = design.counts[rows].astype(float)
    expected = res.predict(data).to_numpy().reshape(len(rows), -1) * res.bin_size
    return counts, expected


def test_pseudo_r2_is_mcfadden_as_nemos_computes_it(fitted, recording):
    nmo = pytest.importorskip("nemos")
    import jax
    counts, expected = _counts_and_expected(fitted, recording)
    observations = nmo.observation_models.PoissonObservations()
    with jax.enable_x64(True):
        nemos_mcf = [float(observations.pseudo_r2(counts[:, u], expected[:, u],
                                                  score_type="pseudo-r2-McFadden"))
                     for u in range(counts.shape[1])]
        nemos_cohen = [float(observations.pseudo_r2(counts[:, u], expected[:, u],
                                                    score_type="pseudo-r2-Cohen"))
                       for u in range(counts.shape[1])]
        pooled_mcf = float(observations.pseudo_r2(counts, expected,
                                                  score_type="pseudo-r2-McFadden"))
    for metric in ("pseudo_r2", "mcfadden"):
        ours = fitted.score(recording, metric, per_unit=True).to_numpy()
        np.testing.assert_allclose(ours, nemos_mcf, rtol=0, atol=1e-8)
        assert fitted.score(recording, metric) == pytest.approx(pooled_mcf, abs=1e-8)
    explained = fitted.score(recording, "deviance_explained", per_unit=True).to_numpy()
    np.testing.assert_allclose(explained, nemos_cohen, rtol=0, atol=1e-8)
    # the two are different numbers on spike counts: McFadden's is the smaller
    assert np.all(np.asarray(nemos_mcf) < explained)


def test_unknown_metric_lists_the_metrics(fitted, recording):
    with pytest.raises(gf.FormulaError, match="mcfadden.*deviance_explained"):
        fitted.score(recording, "r2")


# -- 2. files: one atomic writer, ordinary permissions --------------------------------------------
SPEC = """
[data]
simulate = "head_direction"
options = { n_units = 2, duration = 60.0 }
bin_size = "20ms"
epochs = "wake"

[models]
null = "spikes ~ 1"
hd = "spikes ~ cyclic(head_direction, 6)"

[compare]
cv = 2
"""


def _run_cli(*args, cwd, columns=None, umask=0o022):
    env = dict(os.environ, PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "glmformula", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=600,
                          preexec_fn=(lambda: os.umask(umask)) if os.name == "posix" else None)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_cli_output_files_are_0644_and_the_table_fits_80_columns(tmp_path):
    spec = tmp_path / "models.toml"
    spec.write_text(SPEC)
    out = tmp_path / "results"
    done = _run_cli("compare", str(spec), "--out", str(out), cwd=tmp_path, columns=80)
    assert done.returncode == 0, done.stderr
    written = sorted(out.iterdir())
    assert [p.name for p in written] == ["comparison.csv", "comparison.png"]
    assert all(_mode(p) == 0o644 for p in written), {p.name: oct(_mode(p)) for p in written}
    # the table: at the terminal's width, short headers, a legend, nothing cut
    assert "…" not in done.stdout
    assert "cv bits/spk" in done.stdout and "can be negative" in done.stdout
    table = [line for line in done.stdout.splitlines() if not line.startswith("wrote ")]
    assert max(len(line) for line in table) <= 80


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_saved_results_and_atomic_writes_get_the_usual_mode(fitted, tmp_path):
    from glmformula._files import atomic_write
    previous = os.umask(0o022)
    try:
        saved = fitted.save(tmp_path / "model.npz")
        plain = atomic_write(tmp_path / "sub" / "table.csv", b"a,b\n")
        os.umask(0o077)
        private = atomic_write(tmp_path / "private.csv", b"a,b\n")
    finally:
        os.umask(previous)
    assert _mode(saved) == 0o644 and _mode(plain) == 0o644
    assert _mode(private) == 0o600  # the umask is honoured, not overridden
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["model.npz", "private.csv", "sub",
                                                           "table.csv"]


def test_atomic_write_leaves_nothing_when_aborted_or_interrupted(tmp_path):
    from glmformula._files import atomic_write
    target = tmp_path / "comparison.csv"
    target.write_bytes(b"old\n")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new\n", abort=lambda: True)
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # fails inside the write: cleaned up too
    assert target.read_bytes() == b"old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["comparison.csv"]


def test_package_has_one_file_writer():
    """Output files are written by glmformula._files.atomic_write only (no other mkstemp)."""
    sources = [p for p in (ROOT / "glmformula").rglob("*.py") if p.name != "_files.py"]
    assert not [p.name for p in sources if "mkstemp" in p.read_text()]


# -- 3. version -----------------------------------------------------------------------------------
def test_version(tmp_path):
    done = _run_cli("--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"glmformula {gf.__version__}\n" == "glmformula 0.1.0\n"


# -- 4. the terminal table ------------------------------------------------------------------------
def _comparison_table():
    import pandas as pd
    index = pd.Index(["null", "network", "hd", "hd_history", "hd+history+coupling"],
                     name="model")
    return pd.DataFrame({
        "n_params": [6, 294, 72, 120, 360],
        "train_bits_per_spike": [0.0, 0.9692, 1.273, 1.285, 1.303],
        "cv_bits_per_spike": [-0.187, 0.7962, 1.149, 1.154, 1.136],
        "cv_bits_per_spike_se": [0.092, 0.047, 0.041, 0.041, 0.043],
        "delta_cv_bits_per_spike": [-1.341, -0.3582, -0.0056, 0.0, -0.018],
        "cv_log_likelihood": -1e4, "log_likelihood": -1e4, "aic": 2e4, "bic": 2e4,
        "lr_stat": [np.nan, 900.0, 800.0, 40.0, 100.0], "lr_df": [np.nan, 288, 66, 48, 66],
        "lr_pvalue": [np.nan, 0.0, 0.0, 1.2e-10, 0.0],
        "nested_in": [None, "null", "null", "hd", "network"]}, index=index)


def _header_words(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if title in line) + 1
    stop = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"})
    return " ".join(lines[start:stop]).split()


@pytest.mark.parametrize("columns", [80, 120])
def test_comparison_table_headers_legend_and_p_values(columns, monkeypatch, capsys):
    from glmformula import cli
    monkeypatch.setenv("COLUMNS", str(columns))
    cli._print_table(_comparison_table(), "models.toml: 5 models, cv=5")
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= columns
    assert "…" not in text
    headers = [cli.HEADERS[c] for c in cli.COMPARISON_COLUMNS if c != "edf"]
    assert len(set(headers)) == len(headers)
    words = _header_words(text, "models.toml")
    for header in ["model", *headers]:
        assert all(word in words for word in header.split()), (header, words)
    assert "likelihood-ratio" in text and "can be negative" in text  # the legend
    rows = {line.split()[0]: line for line in lines if line.strip().startswith("network")}
    assert "<1e-16" in rows["network"] and " 0 " not in rows["network"]
    if columns >= 100:  # nothing wraps
        for name in _comparison_table().index:
            assert any(line.split()[:1] == [name] for line in lines), name


def test_fit_summary_table_prints_small_p_values_as_bounds(monkeypatch, capsys):
    import pandas as pd

    from glmformula import cli
    monkeypatch.setenv("COLUMNS", "80")
    frame = pd.DataFrame({"columns": [8, 1], "df": [7, 1], "wald_chi2": [5000.0, 3.2],
                          "p_value": [0.0, 0.0736]},
                         index=pd.MultiIndex.from_tuples([("cyclic(hd, 8)", 0), ("speed", 0)],
                                                         names=["term", "unit"]))
    cli._print_table(frame, "hd: spikes ~ cyclic(hd, 8) + speed")
    text = capsys.readouterr().out
    assert "<1e-16" in text and "0.074" in text and "Wald" in text
    assert "test that all the term's weights are 0" in text


def test_print_summary_follows_the_terminal_width(fitted, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    fitted.print_summary()
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text


# -- 6. curves in Hz ------------------------------------------------------------------------------
def test_rate_curve_holds_the_other_terms_at_their_training_average(fitted, recording):
    from glmformula.results.curves import curve
    rate = curve(fitted, "cyclic(hd, 8)", scale="rate", data=recording, n_points=36)
    log = fitted.curve("cyclic(hd, 8)", scale="log", n_points=36)
    X = gf.design_matrix(fitted.formula, recording, bin_size=BIN)
    # the other term (speed) at its average contribution over the training rows
    speed_mean = X.to_numpy(intercept=False)[:, X.term_slices["speed"]].mean(axis=0)
    for u in fitted.unit_ids:
        other = float(speed_mean @ fitted.coef.loc["speed", u].to_numpy())
        expected = np.exp(fitted.intercept[u] + log[(u, "estimate")] + other) / BIN
        np.testing.assert_allclose(rate[(u, "estimate")], expected, rtol=1e-9)
        assert np.all(rate[(u, "lower")] < rate[(u, "estimate")])
        assert np.all(rate[(u, "estimate")] < rate[(u, "upper")])
    assert rate.columns.names == ["unit", "stat"] and rate.index.name == "hd"


def test_rate_curve_is_comparable_with_pynapple_tuning_curves(recording):
    from glmformula.results.curves import curve
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gf.fit("spikes ~ cyclic(hd, 8)", recording, bin_size=BIN)
    tuning = nap.compute_tuning_curves(recording["spikes"], recording["hd"], bins=24,
                                       range=(0, 2 * np.pi), return_pandas=True)
    centres = tuning.index.to_numpy(float)
    rate = curve(res, "hd", scale="rate", data=recording, n_points=240)
    grid = rate.index.to_numpy(float)
    for u in res.unit_ids:
        model = np.interp(centres, grid, rate[(u, "estimate")], period=2 * np.pi)
        observed = tuning[u].to_numpy(float)
        assert np.median(np.abs(model / observed - 1)) < 0.1, (u, model, observed)
        assert np.corrcoef(model, observed)[0, 1] > 0.9


def test_rate_curve_needs_the_training_data_or_refuses_clearly(fitted):
    from glmformula.results.curves import curve
    if getattr(fitted, "column_means", None) is None:
        with pytest.raises(gf.FormulaError, match="data=data"):
            curve(fitted, "hd", scale="rate")
    with pytest.raises(gf.FormulaError, match="(?s)unknown scale.*rate"):
        fitted.curve("hd", scale="Hz")


def test_rate_curves_work_from_the_result_alone_and_survive_saving(tmp_path):
    """The training means are kept with the fit (and in files), so scale="rate" needs no data
    and equals the curve computed from the training data."""
    data = gf.datasets.head_direction(n_units=2, duration=120.0, seed=3)
    res = gf.fit("spikes ~ cyclic(head_direction, 8) + history(3, log, window=50ms)", data,
                 bin_size="10ms", epochs="wake", regularizer=gf.Ridge(1e-4))
    own = res.curve("head_direction", scale="rate")
    from_data = res.curve("head_direction", scale="rate", data=data)
    np.testing.assert_allclose(own.to_numpy(), from_data.to_numpy(), rtol=1e-9)
    loaded = gf.load_result(res.save(tmp_path / "r"))
    np.testing.assert_allclose(loaded.curve("head_direction", scale="rate").to_numpy(),
                               own.to_numpy(), rtol=1e-12)
