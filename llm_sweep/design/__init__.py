"""Designing a scaling-law study: simulate it through the project's own fit before running it."""
