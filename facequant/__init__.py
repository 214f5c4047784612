"""facequant: how far from the camera does each quantized face-embedding backend still match?"""

__version__ = "0.1.0"
