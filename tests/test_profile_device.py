"""The AEVB_PROFILE switch and device selection."""

import pytest
import torch

from aevb import profile
from aevb.device import default_device, resolve_device


def test_profiles_order_training_lengths(monkeypatch):
    for key in profile.budgets("smoke"):
        assert (
            profile.budget(key, "smoke")
            <= profile.budget(key, "book")
            <= profile.budget(key, "paper")
        )
    monkeypatch.setenv("AEVB_PROFILE", "paper")
    assert profile.current() == "paper"
    assert profile.budget("figure2_samples") == 100_000_000  # the paper's 10^8


def test_default_profile_is_book(monkeypatch):
    monkeypatch.delenv("AEVB_PROFILE", raising=False)
    assert profile.current() == "book"


def test_unknown_profile_and_budget_names_the_fix(monkeypatch):
    monkeypatch.setenv("AEVB_PROFILE", "fast")
    with pytest.raises(ValueError, match="smoke, book, paper"):
        profile.current()
    with pytest.raises(KeyError, match="Did you mean figure2_samples"):
        profile.budget("figure2_sample", "book")


def test_devices(monkeypatch):
    monkeypatch.delenv("AEVB_DEVICE", raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None) == default_device()
    monkeypatch.setenv("AEVB_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="use 'cpu'"):
            resolve_device("cuda")
