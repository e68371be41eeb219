"""archlab: design neural-network architectures the way the design literature teaches."""
__version__ = "0.1.0"
