"""Sample-quality evaluation: FID, sFID, IS and improved precision/recall (jaxmoda.eval.metrics)."""
