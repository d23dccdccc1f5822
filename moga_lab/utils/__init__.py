"""Small helpers with no knowledge of models or data: atomic file writes (`.atomic`) and process-level CPU
settings and machine descriptions (`.runtime`), MAC counts (`.flops`), the MLflow study store (`.tracking`)."""
