"""jen1: JEN-1 text-to-music (generation, inpainting, continuation) for the command line."""

__version__ = "0.1.0"
