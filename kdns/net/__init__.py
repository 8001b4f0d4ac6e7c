"""Operating-system calls the serving side and the upstream side both use (batched UDP)."""
