"""kdns: a cluster DNS service-discovery server for Kubernetes."""

__version__ = "0.1.0"
