"""Seeded simulations of the real overlay code (small enough for every test run)."""
