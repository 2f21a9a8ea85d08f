"""segkit: 3D CT/MRI volumes to trained 2D segmentation models and back to label volumes.

Importing ``segkit`` never imports TensorFlow; the heavy modules are imported by the stages that need them.
"""

__version__ = "0.1.0"
