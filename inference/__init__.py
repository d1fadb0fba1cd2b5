"""Lightbox's local model server: a Cog predictor built on diffusers.

Heavy imports (torch, diffusers) happen in Predictor.setup(), never at import
time, so cog's inspector and the schema command stay fast.
"""
