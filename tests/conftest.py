"""Shared pytest configuration; fixtures live next to the tests that use them."""
