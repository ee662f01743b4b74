"""The pyfuncs the benchmark compares ours with, logged as MLflow models from code."""
