"""Stage 2, the faces: read photos, detect, pick a face, landmarks, align, cache crops."""
