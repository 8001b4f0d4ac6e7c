"""The plugins a server block's chain is built from, one module per Corefile directive."""
