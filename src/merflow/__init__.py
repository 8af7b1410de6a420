"""merflow: music emotion recognition from raw audio to the result tables of two papers."""

__version__ = "0.1.0"
