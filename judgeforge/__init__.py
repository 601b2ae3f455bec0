"""judgeforge: build, fine-tune and benchmark judge models."""

__version__ = "0.1.0"
