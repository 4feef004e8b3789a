"""Clinician-guided refinement: guidance (points, strokes) as known voxels of the diffusion, merged into a previous result."""
