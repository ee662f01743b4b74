"""Side-by-side benchmark of the explainable model, MLflow's floor, the usual way, and the proxy."""
