"""Ablation reports built from MLflow alone."""
