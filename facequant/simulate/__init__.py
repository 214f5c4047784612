"""Stage 3, distance: camera profiles, face size by distance, the degradation chain."""
