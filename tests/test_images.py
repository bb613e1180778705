"""Preprocessing and pixelization on hand-made constituents (toy jets)."""

import numpy as np
import pytest

from nurdad.errors import ConfigError
from nurdad.images import ImageConfig, jet_images, preprocess_coordinates, relative_coordinates
from nurdad.kinematics import jet_four_vectors, wrap_phi


def toy_jet(pts, etas, phis):
    return np.array([np.stack([pts, etas, phis], axis=-1)], dtype=np.float64)


def image_moments(image, half_width=0.8):
    size = image.shape[-1]
    centres = -half_width + (np.arange(size) + 0.5) * (2 * half_width / size)
    v, u = np.meshgrid(centres, centres, indexing="ij")
    w = image / image.sum()
    mu, mv = (w * u).sum(), (w * v).sum()
    suu = (w * (u - mu) ** 2).sum()
    svv = (w * (v - mv) ** 2).sum()
    suv = (w * (u - mu) * (v - mv)).sum()
    return mu, mv, suu, svv, suv


def test_unit_sum_and_centroid_at_centre():
    rng = np.random.default_rng(1)
    toy = toy_jet(rng.exponential(20, 30), 0.3 + rng.normal(0, 0.15, 30), 1.0 + rng.normal(0, 0.15, 30))
    axis = jet_four_vectors(toy)
    image = jet_images(toy, axis["eta"], axis["phi"], ImageConfig(rotate=False, flip=False))[0]
    assert image.shape == (50, 50)
    assert image.sum() == pytest.approx(1.0, abs=1e-5)
    mu, mv, *_ = image_moments(image)
    pixel = 1.6 / 50
    assert abs(mu) < pixel and abs(mv) < pixel


def test_rotation_makes_principal_axis_vertical():
    rng = np.random.default_rng(2)
    t = rng.normal(0, 0.25, 200)
    # elongated toy jet along the direction 30 degrees from the eta axis
    etas = t * np.cos(np.pi / 6) + rng.normal(0, 0.02, 200)
    phis = t * np.sin(np.pi / 6) + rng.normal(0, 0.02, 200)
    toy = toy_jet(np.full(200, 3.0), etas, phis)
    image = jet_images(toy, np.zeros(1), np.zeros(1), ImageConfig(flip=False))[0]
    _, _, suu, svv, suv = image_moments(image)
    assert svv > 10 * suu  # elongated along v (vertical)
    assert abs(suv) < 0.05 * svv
    unrotated = jet_images(toy, np.zeros(1), np.zeros(1), ImageConfig(rotate=False, flip=False))[0]
    _, _, suu0, svv0, _ = image_moments(unrotated)
    assert suu0 > svv0  # before rotation the long axis is closer to u


def test_flip_puts_hardest_quadrant_upper_right():
    # hardest constituent lower-left of the centroid, softer ones elsewhere
    toy = toy_jet(
        np.array([100.0, 10.0, 10.0, 5.0]),
        np.array([-0.3, 0.2, 0.25, 0.1]),
        np.array([-0.05, 0.3, -0.25, 0.2]),
    )
    config = ImageConfig(rotate=False)
    image = jet_images(toy, np.zeros(1), np.zeros(1), config)[0]
    half = 25
    quadrants = {
        "upper_right": image[half:, half:].sum(),
        "upper_left": image[half:, :half].sum(),
        "lower_left": image[:half, :half].sum(),
        "lower_right": image[:half, half:].sum(),
    }
    assert max(quadrants, key=quadrants.get) == "upper_right"


def test_flip_is_identity_when_hardest_already_upper_right():
    pt, u, v = np.array([[5.0, 1.0]]), np.array([[0.2, -0.1]]), np.array([[0.1, -0.3]])
    config = ImageConfig(center=False, rotate=False)
    u2, v2 = preprocess_coordinates(pt, u, v, config)
    np.testing.assert_allclose(u2, u)
    np.testing.assert_allclose(v2, v)


def test_phi_wraps_across_pi():
    toy = toy_jet(np.array([50.0, 50.0]), np.array([0.0, 0.0]), np.array([3.1, -3.1]))
    _, _, v = relative_coordinates(toy, np.zeros(1), np.array([np.pi]))
    assert np.all(np.abs(v) < 0.1)
    assert wrap_phi(np.array([3 * np.pi]))[0] == pytest.approx(np.pi)


def test_padding_and_outside_constituents_are_ignored():
    toy = toy_jet(np.array([10.0, 0.0, 5.0]), np.array([0.0, 0.0, 1.5]), np.array([0.0, 0.0, 0.0]))
    image = jet_images(toy, np.zeros(1), np.zeros(1), ImageConfig(center=False, rotate=False,
                                                                  flip=False, normalize=False))[0]
    assert image.sum() == pytest.approx(10.0)  # the constituent at delta-eta 1.5 is outside +-0.8


def test_jet_mass_matches_four_vector_sum():
    # two massless back-to-back-ish constituents: m^2 = 2 pt1 pt2 (cosh(deta) - cos(dphi))
    toy = toy_jet(np.array([300.0, 250.0]), np.array([0.1, -0.2]), np.array([0.3, 0.1]))
    expected = np.sqrt(2 * 300 * 250 * (np.cosh(0.3) - np.cos(0.2)))
    kin = jet_four_vectors(toy)
    assert kin["mass"][0] == pytest.approx(expected, rel=1e-9)
    single = jet_four_vectors(toy_jet(np.array([100.0]), np.array([0.5]), np.array([-1.0])))
    assert single["mass"][0] == pytest.approx(0.0, abs=1e-4)  # massless in, massless out
    assert single["eta"][0] == pytest.approx(0.5)
    assert single["pt"][0] == pytest.approx(100.0)


def test_bad_image_config():
    with pytest.raises(ConfigError, match="images.size"):
        ImageConfig(size=1)
    with pytest.raises(ConfigError, match="images.half_width"):
        ImageConfig(half_width=0)
