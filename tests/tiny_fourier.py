"""A tiny random model with the Fourier (istft) codec, for tests that need a codec whose decoder is
not local (Griffin-Lim over the whole piece) or whose output follows its latent."""

import torch

from jen1cli.config import AutoencoderConfig
from jen1cli.testing import tiny_config, tiny_text_encoder


def tiny_fourier_model(seed: int = 0):
    """The tiny model of jen1cli.testing with a few-hundred-parameter istft codec (hop 320)."""
    from jen1cli.model import Jen1Model

    torch.manual_seed(seed)
    config = tiny_config()
    config.autoencoder = AutoencoderConfig(
        latent_dim=8,
        ratios=(8, 8, 5),
        decoder="istft",
        mid_bands=6,
        side_bands=2,
        analysis_ffts=(1024, 256),
        n_fft=512,
        decoder_dim=16,
        decoder_layers=1,
        griffin_lim_iters=4,
    )
    model = Jen1Model(config, tiny_text_encoder(config.text_encoder.hidden_size)).eval()
    with torch.no_grad():
        model.whitener.update(model.autoencoder.encode(0.1 * torch.randn(4, 2, config.sample_rate)))
        model.whitener.fit()
    return model
