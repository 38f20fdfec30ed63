"""FER Studio: facial expression recognition on photos, video and cameras, with training and evaluation."""

__version__ = "0.1.0"
