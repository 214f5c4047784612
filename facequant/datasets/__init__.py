"""The photos: identity folders, labelled pairs, LFW."""
