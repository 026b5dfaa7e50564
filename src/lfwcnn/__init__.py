"""lfwcnn: a reproducibility pipeline for Soydaner (2019), "Rolling in the Deep CNNs"."""

__version__ = "0.1.0"
