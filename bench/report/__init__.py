"""Leaderboards and figures from logged runs (MLflow + per-sample parquet)."""
