"""DICOM-SEG out and in, through highdicom: a label volume as a Segmentation object that references the
source series, one segment per class (name, colour, coded category and type, algorithm segkit + version),
and such an object read back as a label volume in world space.

Segment k (1..N) holds the voxels of the k-th class of the ``segments`` given; reading returns segment
numbers, which are the class ids when the classes are numbered 1..N (as segkit's configs number them). Coded
concepts: the class's ``concept`` (the config's ``classes[].concept``; the presets give SNOMED CT codes);
without one, category "Anatomical Structure" (SCT 91723000) and a type looked up by class name (any case:
``LA``, ``Myo``, ``left_atrium`` ...) in ``CARDIAC_CODES``, else "Tissue" (SCT 85756007).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from segkit.errors import DataError
from segkit.io.atomic import atomic_path
from segkit.io.world import lps_to_ras

if TYPE_CHECKING:
    from segkit.io.segmentations import Segment
    from segkit.io.volumes import VolumeRef

#: class name (lower case) -> (SNOMED CT code, meaning) of the segmented property type.
CARDIAC_CODES: dict[str, tuple[str, str]] = {
    name: code
    for names, code in (
        (("left_atrium", "la"), ("82471001", "Left atrium")),
        (("right_atrium", "ra"), ("73829009", "Right atrium")),
        (("left_ventricle", "lv"), ("87878005", "Left ventricle")),
        (("right_ventricle", "rv"), ("53085002", "Right ventricle")),
        (("myocardium", "myo"), ("74281007", "Myocardium")),
        (("aorta", "ao"), ("15825003", "Aorta")),
        (("pulmonary_artery", "pa"), ("81040000", "Pulmonary artery")),
        (("aortic_valve", "av"), ("34202007", "Aortic valve")),
        (("mitral_valve", "mv"), ("91134007", "Mitral valve")),
        (("inferior_vena_cava", "ivc"), ("64131007", "Inferior vena cava")),
        (("superior_vena_cava", "svc"), ("48345005", "Superior vena cava")),
        (("left_coronary_artery", "lca"), ("50018008", "Left coronary artery")),
        (("right_coronary_artery", "rca"), ("13647002", "Right coronary artery")),
        (("heart",), ("80891009", "Heart")),
        (("lung",), ("39607008", "Lung")),
        (("trachea",), ("44567001", "Trachea")),
    )
    for name in names
}


def _concept(seg: Segment):  # noqa: ANN202 - (category, type) as pydicom Codes
    """The segmented property category and type of ``seg``: its concept, else a look-up by name."""
    from pydicom.sr.coding import Code

    if seg.concept is not None:
        cat, typ = seg.concept.category, seg.concept.type
        return Code(cat.code, cat.scheme, cat.meaning), Code(typ.code, typ.scheme, typ.meaning)
    key = seg.name.lower().replace(" ", "_").replace("-", "_")
    code, meaning = CARDIAC_CODES.get(key, ("85756007", "Tissue"))
    return Code("91723000", "SCT", "Anatomical Structure"), Code(code, "SCT", meaning)


def write_dicom_seg(path: Path, labels: npt.NDArray, source: VolumeRef,
                    segments: tuple[Segment, ...]) -> Path:
    """Write ``labels`` (X, Y, Z, in the Z order ``segkit.io.dicom`` reads ``source`` in) as a DICOM-SEG.

    Raises:
        DataError: labels whose shape differs from the source series; ids without a segment.
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    import segkit
    from segkit.io.dicom import series_layout

    order, aff_lps = series_layout(source.path, source.series_key)
    files = sorted({f for f, _ in order})
    frame_uid = hd.UID()  # for sources without one (anonymised exports); the SEG needs a frame of reference
    datasets = {f: _with_type2(pydicom.dcmread(str(f)), frame_uid) for f in files}
    first = datasets[files[0]]
    if len({str(d.get("SeriesInstanceUID", "")) for d in datasets.values()}) > 1:
        raise DataError("the source spans several series (a cine stored as one series per slice position); "
                        "a DICOM-SEG references one series", path=path,
                        hint="write these labels as nifti, nrrd, mha or seg.nrrd")
    arr = np.asarray(labels)
    if arr.shape != (int(first.Columns), int(first.Rows), len(order)):
        raise DataError(f"labels of shape {arr.shape} do not fit the source series", path=path,
                        hint="write the labels of this very series")
    number = {seg.id: k + 1 for k, seg in enumerate(segments)}
    unknown = sorted(set(np.unique(arr).tolist()) - set(number) - {0})
    if unknown:
        raise DataError(f"label ids {unknown} have no class", path=path, hint="check the config's classes")
    lut = np.zeros(max([*number, int(arr.max()) if arr.size else 0]) + 1, dtype=np.uint8)
    for cid, k in number.items():
        lut[cid] = k
    planes = lut[arr].transpose(2, 1, 0)  # (Z, rows, columns)
    z_of_frame = list(range(len(order)))
    if len(files) == 1 and len(order) > 1:  # one multi-frame file: frames in the file's own order
        pixel = np.zeros_like(planes)
        rank = {frame: j for j, frame in enumerate(sorted(f for _, f in order))}  # one phase of a cine
        for z, (_, frame) in enumerate(order):
            pixel[rank[frame]], z_of_frame[rank[frame]] = planes[z], z
        sources = [first]
    else:
        pixel, sources = planes, [datasets[f] for f, _ in order]
    algo = hd.AlgorithmIdentificationSequence(name="segkit", family=codes.cid7162.ArtificialIntelligence,
                                              version=segkit.__version__)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=k + 1, segment_label=seg.name,
            segmented_property_category=_concept(seg)[0],
            segmented_property_type=_concept(seg)[1], algorithm_type="AUTOMATIC",
            algorithm_identification=algo,
            display_color=hd.color.CIELabColor.from_rgb(*seg.color))
        for k, seg in enumerate(segments)
    ]
    spacing = np.linalg.norm(aff_lps[:3, :3], axis=0)
    for d in sources:  # highdicom reads these from the source even when given the geometry
        if "PerFrameFunctionalGroupsSequence" not in d and "SliceThickness" not in d:
            d.SliceThickness = float(spacing[2])
        if "PerFrameFunctionalGroupsSequence" in d:
            _share_frame_groups(d)
    geometry = {
        "pixel_measures": hd.PixelMeasuresSequence(pixel_spacing=[float(spacing[1]), float(spacing[0])],
                                                   slice_thickness=float(spacing[2])),
        "plane_orientation": hd.PlaneOrientationSequence(
            "PATIENT", [float(v) for v in (*aff_lps[:3, 0] / spacing[0], *aff_lps[:3, 1] / spacing[1])]),
        "plane_positions": [
            hd.PlanePositionSequence("PATIENT", [float(v) for v in (aff_lps @ [0, 0, z, 1])[:3]])
            for z in z_of_frame],
    }
    with warnings.catch_warnings():  # highdicom warns about single-component person names of the source
        warnings.simplefilter("ignore", UserWarning)
        seg_ds = _segmentation(sources, pixel, descriptions, geometry)
    with atomic_path(path) as tmp:
        seg_ds.save_as(str(tmp))
    return path


def _segmentation(sources: list, pixel: npt.NDArray, descriptions: list, geometry: dict):  # noqa: ANN202
    import highdicom as hd

    import segkit

    return hd.seg.Segmentation(
        source_images=sources, pixel_array=pixel, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="segkit",
        manufacturer_model_name="segkit", software_versions=segkit.__version__, device_serial_number="0",
        series_description="segkit segmentation", omit_empty_frames=False, **geometry)


# type 2 attributes of the patient and study modules that highdicom copies into the SEG; anonymised
# exports often drop them, and an empty value is valid DICOM
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _with_type2(ds, frame_uid: str):  # noqa: ANN001, ANN202 - pydicom Dataset in and out
    for key in _TYPE2:
        if key not in ds:
            setattr(ds, key, "")
    if "FrameOfReferenceUID" not in ds:
        ds.FrameOfReferenceUID = frame_uid
    return ds


def _share_frame_groups(ds) -> None:  # noqa: ANN001 - pydicom Dataset
    """Copy frame 1's pixel measures and plane orientation into the shared functional groups where an
    enhanced file keeps them per frame (the values are checked equal across frames by segkit's reader)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    if "SharedFunctionalGroupsSequence" not in ds or not len(ds.SharedFunctionalGroupsSequence):
        ds.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    shared = ds.SharedFunctionalGroupsSequence[0]
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    for key in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if key not in shared and key in frame:
            setattr(shared, key, frame[key].value)


def read_dicom_seg(path: Path) -> tuple[npt.NDArray, npt.NDArray[np.float64]]:
    """(labels (X, Y, Z) uint8 segment numbers, voxel -> RAS affine) of a DICOM-SEG file, its slices ordered
    along the normal of the planes as ``segkit.io.dicom`` orders the source series (the same array as the
    source's labels)."""
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    vol = seg.get_volume(combine_segments=True, skip_overlap_checks=True)
    array = np.asarray(vol.array)  # (slices, rows, columns)
    aff_lps = np.asarray(vol.affine, dtype=np.float64)  # index order (slice, row, column)
    perm = np.zeros((4, 4))
    perm[0, 2] = perm[1, 1] = perm[2, 0] = perm[3, 3] = 1.0  # (x=column, y=row, z=slice) -> (slice, row, col)
    data, aff = array.transpose(2, 1, 0).astype(np.uint8), aff_lps @ perm
    if float(aff[:3, 2] @ np.cross(aff[:3, 0], aff[:3, 1])) < 0:  # along the normal, as segkit.io.dicom
        data = data[:, :, ::-1]
        aff = aff @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, data.shape[2] - 1], [0, 0, 0, 1.0]])
    return np.ascontiguousarray(data), lps_to_ras(aff)
