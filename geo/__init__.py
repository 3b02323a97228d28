"""Hot spots, projections and the packed spatial index."""
