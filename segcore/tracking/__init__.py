"""MLflow: run tracking, store health and catch-up, lineage, the registry and the served pyfunc model."""
