"""Users' data: datasets (folders, CSV, zip), class matching, the evaluation loop and training logs.

The published-figures files beside this module (``*.csv``, ``counted.json``) are package data read by
``backbones.zoo``.
"""
