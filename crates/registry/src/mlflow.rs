//! Owned by the MLflow-registry work (in progress).
