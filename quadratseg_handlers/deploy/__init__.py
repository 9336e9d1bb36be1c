"""Bundles: the function catalogue, function.yaml (rendering and reading), packaging,
validation and zip archives."""
