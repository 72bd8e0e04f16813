"""Label super-resolution losses of Zhao et al. (2019) against a direct numpy reading of eqs. 1-11."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from weaksegtf.data.joint_distribution_table import JointDistributionTable
from weaksegtf.errors import ConfigError, DataError
from weaksegtf.losses import (
    InterInstanceLoss,
    IntraInstanceLoss,
    IntraInterInstanceLoss,
    block_statistics,
    inter_instance_loss,
    intra_instance_loss,
    intra_inter_instance_loss,
    statistics_matching,
)
from weaksegtf.models import WeakSegmenter
from weaksegtf.training import train_weak_segmenter

U = 255  # unlabelled block
EPS = 1e-4


# --- the paper's equations, one block and one cell at a time -------------------------------------


def np_blocks(p, z):
    """Eqs. 1-3: per-block mean share and Bernoulli variance, blocks in patch-major, row-major order."""
    z = z.reshape(len(z), 1, 1) if z.ndim == 1 else z
    batch, height, width, _ = p.shape
    bh, bw = height // z.shape[1], width // z.shape[2]
    mus, variances, labels = [], [], []
    for b in range(batch):
        for r in range(z.shape[1]):
            for c in range(z.shape[2]):
                block = p[b, r * bh:(r + 1) * bh, c * bw:(c + 1) * bw].reshape(-1, p.shape[-1]).astype(np.float64)
                mus.append(block.mean(0))
                variances.append((block * (1 - block)).mean(0))
                labels.append(int(z[b, r, c]))
    return np.array(mus), np.array(variances), np.array(labels)


def np_distance(mu, var, eta, rho, eps=EPS):
    """Eq. 5 (= eq. 9) as printed, with the variance floor."""
    s = var + eps
    return 0.5 * s * (eta - mu) ** 2 / (rho**2 + s) ** 2 + 0.5 * np.log(2 * np.pi * s)


def np_intra(p, z, eta, rho, eps=EPS):
    mus, variances, labels = np_blocks(p, z)
    terms = [np_distance(m, v, eta[k], rho[k], eps).sum() for m, v, k in zip(mus, variances, labels) if k != U]
    return np.mean(terms) if terms else 0.0


def np_grouped(p, z, eta, rho, group_size, with_intra, eps=EPS):
    mus, variances, labels = np_blocks(p, z)
    size = group_size or len(labels)
    terms = []
    for start in range(0, len(labels), size):
        for label in range(len(eta)):
            ks = [k for k in range(start, min(start + size, len(labels))) if labels[k] == label]
            if not ks:
                continue
            mu = np.mean(mus[ks], axis=0)  # eqs. 8 and 11
            if with_intra:  # eq. 11, last line
                var = np.mean(variances[ks], axis=0) + np.mean(mus[ks] ** 2 - mu**2, axis=0)
            else:  # eq. 8
                var = np.mean((mus[ks] - mu) ** 2, axis=0)
            terms.append(np_distance(mu, var, eta[label], rho[label], eps).sum())
    return np.mean(terms) if terms else 0.0


# --- random inputs -----------------------------------------------------------------------------

def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype("float32")


@pytest.fixture()
def case():
    rng = np.random.default_rng(7)
    num_labels, num_classes = 4, 3
    eta = rng.dirichlet(np.ones(num_classes), num_labels)
    rho = rng.uniform(0.0, 0.2, (num_labels, num_classes))
    rho[0] = 0.0  # a row of zero standard deviations is legal
    p = _softmax(rng.normal(0, 2, (6, 16, 16, num_classes)))
    z = rng.integers(0, num_labels, (6, 2, 2))
    z[1, 0, 1] = U
    return p, z, eta, rho


def test_block_statistics_follow_eqs_1_to_3(case):
    p, z, _, _ = case
    mu, var, labels = block_statistics(p, z)
    ref_mu, ref_var, ref_labels = np_blocks(p, z)
    np.testing.assert_allclose(np.asarray(mu), ref_mu, atol=1e-6)
    np.testing.assert_allclose(np.asarray(var), ref_var, atol=1e-6)
    assert np.asarray(labels).tolist() == ref_labels.tolist()


def test_statistics_matching_is_eq_5():
    mu, var, eta, rho = 0.3, 0.02, 0.7, 0.05
    expected = 0.5 * var * (eta - mu) ** 2 / (rho**2 + var) ** 2 + 0.5 * np.log(2 * np.pi * var)
    assert float(statistics_matching(np.float64(mu), np.float64(var), eta, rho, variance_epsilon=0.0)) == pytest.approx(expected)


@pytest.mark.parametrize("eps", [0.0, EPS])
def test_intra_instance_loss_matches_eqs_1_to_5(case, eps):
    p, z, eta, rho = case
    if eps == 0.0:
        rho = rho + 0.01  # eq. 5 as printed needs rho^2 + sigma^2 > 0
    value = float(intra_instance_loss(z, p, eta, rho, variance_epsilon=eps))
    assert value == pytest.approx(np_intra(p, z, eta, rho, eps), abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("group_size", [5, 24, None])
def test_inter_instance_loss_matches_eqs_6_to_9(case, group_size):
    p, z, eta, rho = case
    value = float(inter_instance_loss(z, p, eta, rho, group_size=group_size))
    assert value == pytest.approx(np_grouped(p, z, eta, rho, group_size, with_intra=False), abs=1e-5, rel=1e-5)


@pytest.mark.parametrize("group_size", [5, 15, None])
def test_intra_inter_instance_loss_matches_eqs_10_and_11(case, group_size):
    p, z, eta, rho = case
    value = float(intra_inter_instance_loss(z, p, eta, rho, group_size=group_size))
    assert value == pytest.approx(np_grouped(p, z, eta, rho, group_size, with_intra=True), abs=1e-5, rel=1e-5)


def test_one_label_per_patch_is_a_one_by_one_block_map(case):
    p, z, eta, rho = case
    single = z[:, 0, 0]
    for fn in (intra_instance_loss, inter_instance_loss, intra_inter_instance_loss):
        assert float(fn(single, p, eta, rho)) == pytest.approx(float(fn(single[:, None, None], p, eta, rho)), rel=1e-6)
    assert float(intra_inter_instance_loss(single, p, eta, rho, group_size=3)) == pytest.approx(
        np_grouped(p, single, eta, rho, 3, with_intra=True), abs=1e-5, rel=1e-5
    )


def test_all_blocks_unlabelled_gives_zero():
    p = _softmax(np.zeros((2, 8, 8, 2)))
    z = np.full((2,), U)
    eta, rho = [[0.5, 0.5]], [[0.1, 0.1]]
    for fn in (intra_instance_loss, inter_instance_loss, intra_inter_instance_loss):
        assert float(fn(z, p, eta, rho)) == 0.0


@pytest.mark.parametrize("fn", [intra_instance_loss, inter_instance_loss, intra_inter_instance_loss])
def test_gradients_stay_finite_as_the_variance_goes_to_zero(fn):
    # Saturated softmax: every p(1 - p) is exactly 0 in float32 (intra variance 0), and identical
    # patches give identical block shares (inter variance 0). rho = 0 too: nothing but the floor is left.
    logits = np.zeros((4, 8, 8, 2), np.float32)
    logits[..., 0] = 200.0  # exp(-200) underflows: p is exactly 0 or 1
    logits[:, :4, :, 0] = -200.0
    logits = tf.Variable(logits)
    z = np.zeros((4,), np.int32)
    eta, rho = [[0.3, 0.7]], [[0.0, 0.0]]
    with tf.GradientTape() as tape:
        loss = fn(z, tf.nn.softmax(logits), eta, rho, variance_epsilon=1e-4)
    grad = tape.gradient(loss, logits).numpy()
    assert np.isfinite(float(loss)) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("cls, fn, extra", [
    (IntraInstanceLoss, intra_instance_loss, {}),
    (InterInstanceLoss, inter_instance_loss, {"group_size": 5}),
    (IntraInterInstanceLoss, intra_inter_instance_loss, {"group_size": 5}),
])
def test_keras_losses_serialize_and_match_the_functions(case, cls, fn, extra):
    p, z, eta, rho = case
    table = JointDistributionTable(eta, rho)
    loss = cls(table, **extra)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, cls) and restored.get_config() == loss.get_config()
    logits = np.log(p)
    assert float(restored(z, logits)) == pytest.approx(float(fn(z, p, eta, rho, **extra)), rel=1e-5)


@pytest.mark.slow
def test_lowres_only_step_trains_the_segmentation_path_and_not_the_classifier():
    table = JointDistributionTable([[0.9, 0.1], [0.3, 0.7]], [[0.05, 0.05], [0.1, 0.1]])
    keras.utils.set_random_seed(4)
    model = WeakSegmenter(num_classes=2, joint_table=table, lowres_loss="intra")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    images = np.random.default_rng(8).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    block_labels = np.array([[[0, 1], [1, 0]], [[1, 1], [0, U]]], np.int32)
    encoder_before = [np.array(v) for v in model.encoder.trainable_variables]
    classifier_before = [np.array(v) for v in model.classifier_head.variables]
    logs = model.train_on_batch({"lowres": (images, block_labels)}, return_dict=True)
    assert set(logs) >= {"loss", "lowres_loss"} and "seg_loss" not in logs
    assert logs["loss"] == pytest.approx(logs["lowres_loss"])
    assert any(not np.array_equal(b, np.array(v)) for b, v in zip(encoder_before, model.encoder.trainable_variables))
    assert all(np.array_equal(b, np.array(v)) for b, v in zip(classifier_before, model.classifier_head.variables))


def test_a_lowres_batch_without_a_joint_table_is_refused():
    model = WeakSegmenter(num_classes=2)
    model.compile(optimizer="adam")
    with pytest.raises(ConfigError, match="a 'lowres' batch needs a joint_table"):
        model.train_on_batch({"lowres": (np.zeros((1, 32, 32, 3), "float32"), np.zeros((1,), "int32"))})


def test_a_block_label_outside_the_table_is_refused_before_tensorflow():
    table = JointDistributionTable([[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], source="table.csv")
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(DataError, match=r"block label 2 is outside the joint table's 2 labels \(0..1; 255 = unlabelled block\) from table.csv"):
        train_weak_segmenter(None, None, None, None, num_classes=2, mode="LR", lowres_images=images,
                             block_labels=np.array([[[0, 2]], [[1, U]]]), joint_table=table)
    with pytest.raises(DataError, match="a 1x3 block-label map does not tile 32x32 images"):
        train_weak_segmenter(None, None, None, None, num_classes=2, mode="LR", lowres_images=images,
                             block_labels=np.zeros((2, 1, 3), int), joint_table=table)


def test_lowres_settings_that_cannot_work_are_refused():
    images = np.zeros((2, 32, 32, 3), np.uint8)
    with pytest.raises(ConfigError, match="mode LR needs low-resolution images"):
        train_weak_segmenter(None, None, None, None, num_classes=2, mode="LR")
    with pytest.raises(ConfigError, match="low-resolution images need a joint_table"):
        train_weak_segmenter(None, None, None, None, num_classes=2, mode="LR", lowres_images=images,
                             block_labels=np.zeros(2, int))
    three = JointDistributionTable([[0.2, 0.3, 0.5]], [[0.1, 0.1, 0.1]], source="three.json")
    with pytest.raises(ConfigError, match="the joint table from three.json has 3 class columns; expected one per class of the model \\(2\\)"):
        WeakSegmenter(num_classes=2, joint_table=three)
    with pytest.raises(ConfigError, match="lowres_loss 'both' is unknown"):
        WeakSegmenter(num_classes=2, lowres_loss="both")
