"""The demo and what it stands on: drawn quadrats with their truth, the demo models' data sets,
training and manifest, scoring answers against the truth, the pipeline demo, and tiny real
models for every function (tests, the demo, packaging)."""
