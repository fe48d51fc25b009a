"""Using a trained run: recommendations for a user and embeddings exported for serving."""
