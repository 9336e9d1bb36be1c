"""Model-free geometry and image work: grid templates, template matching, the grid mask,
SAM/semantic fusion and the quadrat warp. Imports only core and cvat."""
