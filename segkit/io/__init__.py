"""File input/output: atomic writes, colour palettes, PNG slices, and the one owner of volumes
(segkit.io.volumes: NIfTI, NRRD, MetaImage, NumPy, HDF5, DICOM)."""
