"""Shared building blocks every layer may use: constants, errors, atomic IO, image reading, progress, worker pools, display colours, devices."""
