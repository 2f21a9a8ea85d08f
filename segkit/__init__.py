"""segkit: 3D CT/MRI volumes to trained 2D segmentation models and back to label volumes.

Importing ``segkit`` never imports TensorFlow; the heavy modules are imported by the stages that need them.

Layers, top to bottom; a module imports only from layers below its own (function-local imports included),
and the packages on one line do not import each other where marked ``|``. ``lint-imports`` (``make lint``)
checks this order, written in ``pyproject.toml``'s ``[tool.importlinter]``:

1. ``cli`` -- the Typer commands;
2. ``cv`` -- cross-validation: trains each fold (``train``) and scores it (``evaluate``); then ``export`` --
   deployment bundles of a run or cv folder (reads the preprocessing recipe through ``infer``);
3. ``train | evaluate | infer | plan`` -- the stages (``plan``: a dataset fingerprint and a planned config);
4. ``postprocess`` -- the component filter and the post-processing choice, made by train, applied by
   evaluate and infer;
5. ``predict`` -- model loading, slice and volume prediction, shared by the stages and the choice;
6. ``preview``; then ``data``, ``models``, ``losses``; then ``prepare``;
7. ``io | metrics | geometry | progress | seeds``; then ``config``, ``registry``, ``errors``.
"""

__version__ = "0.1.0"
