"""Config-driven training of an explainable XGBoost classifier logged to MLflow."""
