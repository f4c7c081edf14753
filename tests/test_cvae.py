"""The conditional VAE: the sample layer, the KL term, data.label_input, the gradient of the
whole model in float64, and nnlab generate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import CONFIGS, invoke_nnlab, train_run
from nnlab.config import load_config
from nnlab.errors import ConfigError
from nnlab.experiment import build
from nnlab.gradcheck import check_experiment
from nnlab.nn import LAYERS, LOSSES
from nnlab.runs import load_model

CVAE = CONFIGS / "questions/cvae.yaml"


def test_the_kl_term_is_the_divergence_of_two_normals():
    """Against the definition, integrated numerically: KL(N(mu, s^2) || N(0, 1))."""
    integrate = pytest.importorskip("scipy.integrate")
    mu = np.array([[0.3, -1.2], [2.0, 0.0]])
    log_var = np.array([[-0.5, 0.4], [0.1, -2.0]])
    value, _ = LOSSES.create("kl_divergence")(np.concatenate([mu, log_var], axis=1), None)

    def kl(m, lv):
        s = math.exp(lv / 2)

        def f(x):
            p = math.exp(-0.5 * ((x - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
            q = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
            return p * math.log(p / q) if p > 0 else 0.0

        return integrate.quad(f, m - 12 * s, m + 12 * s)[0]

    want = np.mean([sum(kl(m, lv) for m, lv in zip(mr, lr, strict=True))
                    for mr, lr in zip(mu, log_var, strict=True)])  # fmt: skip
    assert value == pytest.approx(want, rel=1e-7)


def test_the_kl_term_matches_torch_distributions():
    torch = pytest.importorskip("torch", reason="needs PyTorch (the bench extra)")
    out = np.random.default_rng(0).normal(size=(5, 6))
    value, _ = LOSSES.create("kl_divergence")(out.copy(), None)
    mu, log_var = torch.tensor(out[:, :3]), torch.tensor(out[:, 3:])
    q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    want = torch.distributions.kl_divergence(q, p).sum(dim=1).mean().item()
    assert value == pytest.approx(want, rel=1e-12)


def test_the_sample_layer_draws_mu_plus_sigma_eps_and_gives_mu_in_evaluation():
    layer = LAYERS.create("sample")
    layer.build((4,), None, np.float64)
    layer.rng = np.random.default_rng(0)
    X = np.tile([1.0, -2.0, np.log(0.25), 0.0], (20000, 1))  # mu (1, -2), sigma (0.5, 1)
    z = layer.forward(X, training=True)
    np.testing.assert_allclose(z.mean(axis=0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), [0.5, 1.0], rtol=0.02)
    np.testing.assert_array_equal(layer.forward(X, training=False), X[:, :2])
    with pytest.raises(ConfigError, match="even number"):
        LAYERS.create("sample").build((3,), None, np.float64)


def test_label_input_appends_the_one_hot_label_and_reconstructions_leave_it_out():
    exp = build(load_config(CVAE))
    d = exp.data
    assert d.input_shape == (74,) and d.label_columns == 10
    for split in (d.train, d.test):
        np.testing.assert_array_equal(split.X[:, 64:], np.eye(10)[split.y])
    assert d.train.X[:, :64].max() == 1.0  # the pixels scaled by 16, the label not
    np.testing.assert_array_equal(np.asarray(d.scale)[64:], 1.0)
    recon = exp.targets["train"][0].T
    np.testing.assert_array_equal(recon, d.train.X[:, :64])
    assert exp.model.layers[2].rng is exp.sample_rng  # the sample layer's own stream


def test_the_whole_cvae_gradient_checks_in_float64():
    exp = build(load_config(CVAE, ["training.dtype=float64"]))
    checks = check_experiment(exp, samples=6, entries=200)
    assert all(c.passed for c in checks), checks
    assert len(checks) == 2 * 4  # W and b of the four dense layers


@pytest.mark.parametrize(
    "overrides, path, words",
    [
        (["model.outputs[1].target=labels"], "model.outputs[1].target", "takes no target"),
        (["model.outputs[0].target=none"], "model.outputs[0].target", "needs a target"),
        (["model.layers[1].units=15"], "model.layers[2]", "even number"),
        # the reconstruction leaves out the label that data.label_input appends
        (["model.layers[5].units=74"], "model.layers[5].units", "use units: 64"),
    ],
)
def test_cvae_config_errors_name_the_key(overrides, path, words):
    cfg = load_config(CVAE, overrides)
    with pytest.raises(ConfigError, match=words) as info:
        build(cfg)
    assert info.value.path.startswith(path)


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory):
    return train_run(CVAE, tmp_path_factory.mktemp("cvae"), "training.epochs=30")


def test_generate_draws_inputs_for_a_label(cvae_run, tmp_path):
    out = invoke_nnlab("generate", cvae_run, "--label", "3", "-n", "5", "-o", tmp_path / "a.npy")
    assert out.returncode == 0, out.stderr
    a = np.load(tmp_path / "a.npy")
    assert a.shape == (1, 5, 64) and a.min() >= 0 and a.max() <= 16  # raw pixels
    again = invoke_nnlab("generate", cvae_run, "--label", "3", "-n", "5", "-o", tmp_path / "b.npy")
    assert again.returncode == 0
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), a)  # the same seed
    other = invoke_nnlab("generate", cvae_run, "-l", "3", "-n", "5", "--sample-seed", "1", "-o",
                         tmp_path / "c.npy")  # fmt: skip
    assert other.returncode == 0, other.stderr
    assert not np.array_equal(np.load(tmp_path / "c.npy"), a)
    # the decoder given z and the label, by hand, is what generate drew
    model, _ = load_model(cvae_run)
    z = np.random.default_rng(0).standard_normal((5, 8), dtype=np.float32)
    h = np.concatenate([z, np.tile(np.eye(10, dtype=np.float32)[3], (5, 1))], axis=1)
    dec, recon = model.layers[4], model.layers[5]
    pixels = recon.forward(dec.forward(h)) * np.float32(16)
    np.testing.assert_allclose(a[0], pixels, rtol=1e-5, atol=1e-5)


def test_generate_a_png_grid_and_text(cvae_run, tmp_path):
    pytest.importorskip("matplotlib")
    out = invoke_nnlab("generate", cvae_run, "--label", "all", "-n", "3", "-o", tmp_path / "g.png")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "30 samples" in out.stdout
    text = invoke_nnlab("generate", cvae_run, "--label", "0", "-n", "2")
    assert text.returncode == 0 and text.stdout.startswith("label 0:")


def test_generate_refuses_what_it_cannot_draw(cvae_run, tmp_path):
    none = invoke_nnlab("generate", cvae_run)
    assert none.returncode == 2 and "give --label" in none.stderr
    bad = invoke_nnlab("generate", cvae_run, "--label", "33")
    assert bad.returncode == 2 and "'33' is not a class" in bad.stderr
    classifier = train_run(CONFIGS / "xor.yaml", tmp_path)
    no_vae = invoke_nnlab("generate", classifier)
    assert no_vae.returncode == 2 and "no sample layer" in no_vae.stderr


@pytest.mark.parametrize(
    "config, words",
    [
        ("invertible.yaml", "classification data"),
        ("questions/lstm_sequence.yaml", "classification"),
    ],
)
def test_label_input_needs_flat_classification_data(config, words):
    with pytest.raises(ConfigError, match=words) as info:
        build(load_config(CONFIGS / config, ["data.label_input=true"]))
    assert info.value.path == "data.label_input"
