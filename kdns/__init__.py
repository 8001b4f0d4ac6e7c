"""kdns: a cluster DNS service-discovery server for Kubernetes."""

from kdns.native import use_compiled

__version__ = "0.1.0"

# The compiled hot modules (kdns/native.py) are used only when they match the sources.
PURE_REASON = use_compiled()
