"""File input/output: atomic writes, colour palettes, PNG slices and NIfTI/NRRD volumes."""
