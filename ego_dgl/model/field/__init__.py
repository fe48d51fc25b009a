"""The models current multimodal-recommendation papers compare against (MMRec's set)."""
