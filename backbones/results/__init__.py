"""Measurements kept and compared: the SQLite results store (store), the schema every row fits (records), JSON
export and checked import (exchange), the comparison table (comparison) and its Pareto front (pareto)."""
