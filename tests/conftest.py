"""Shared fixtures: a tiny random model folder, written once per session, never downloaded."""

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from jen1cli.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("models") / "jen1-tiny")
