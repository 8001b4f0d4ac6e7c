"""The plugins of a serving chain, one module per Corefile directive."""
