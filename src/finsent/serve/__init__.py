"""Serving and prediction: backends (``finsent ls backends``) and resumable file prediction.

Usage: ``finsent predict --model runs/x/sft "Sales rose 12%"`` or ``predict_file(load_backend(cfg), ...)``.
"""
