"""Promotion, rollback and listing of registered model versions, stages and aliases in step."""
