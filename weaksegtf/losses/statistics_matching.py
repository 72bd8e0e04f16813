"""The statistics-matching distance of label super-resolution, Zhao et al. (2019) eqs. 5 and 9."""

from __future__ import annotations

import math

import tensorflow as tf

#: Added to every predicted variance. The log term of eq. 5 is unbounded as
#: sigma^2 -> 0 (confident predictions, or identical shares across a group);
#: the floor keeps the loss and its gradients finite (variance of 1e-4 = a
#: standard deviation of 1 % of a block).
DEFAULT_VARIANCE_EPSILON = 1e-4


def statistics_matching(mu, var, eta, rho, variance_epsilon: float = DEFAULT_VARIANCE_EPSILON):
    """``D(p_net, p)`` of eq. 5 (and eq. 9), elementwise, exactly as printed in Zhao et al.

    ``D = 1/2 * s (eta - mu)^2 / (rho^2 + s)^2 + 1/2 * log(2 pi s)`` with
    ``s = sigma^2 + variance_epsilon``. ``N(mu, sigma^2)`` is the predicted
    distribution of a class share (per block in eq. 5, across blocks in
    eq. 9) and ``N(eta, rho^2)`` the one the joint table gives for the
    block's low-resolution label (eq. 4).

    Note: the printed formula is not ``-log N(eta; mu, sigma^2 + rho^2)``, the
    Gaussian likelihood of the original LSR (Malkin et al. 2019), whose first
    term is ``(eta - mu)^2 / (rho^2 + sigma^2)``. We follow the paper this
    issue cites; on a toy problem of free per-pixel logits both drive the
    mean shares to ``eta``.

    Args:
        mu, var: predicted mean and variance of the shares, same shape.
        eta, rho: target mean and standard deviation, broadcastable to ``mu``.
        variance_epsilon: float. Floor added to ``var``. Defaults to ``1e-4``.
    """
    var = tf.convert_to_tensor(var)
    s = var + tf.cast(variance_epsilon, var.dtype)
    eta = tf.cast(eta, var.dtype)
    rho2 = tf.square(tf.cast(rho, var.dtype))
    return 0.5 * s * tf.square(eta - mu) / tf.square(rho2 + s) + 0.5 * tf.math.log(2.0 * math.pi * s)
