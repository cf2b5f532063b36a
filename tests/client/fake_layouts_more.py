"""Tiny fake datasets in the exact on-disk layouts of public datasets (part 2: the others)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.client.fake_layouts import (
    BRATS21_RAW,
    FakeTree,
    corrupt,
    expected_counts,
    label_volume,
    volume,
    write_nifti,
)


def upenn_gbm(tmp: Path) -> FakeTree:
    """images_structural/<case>/ and images_segm/ (a follow-up visit shares the subject)."""
    root = tmp / "UPENN-GBM"
    cases = ["UPENN-GBM-00002_11", "UPENN-GBM-00002_21", "UPENN-GBM-00003_11"]
    modalities: dict[str, set[str]] = {}
    for seed, case in enumerate(cases):
        names = {"t1": "T1", "t1ce": "T1GD", "t2": "T2", "flair": "FLAIR"}
        if case.endswith("00003_11"):
            del names["flair"]
        for suffix in names.values():
            write_nifti(root / "images_structural" / case / f"{case}_{suffix}.nii.gz", volume(seed) * 90)
        write_nifti(root / "images_segm" / f"{case}_segm.nii.gz", label_volume(BRATS21_RAW))
        modalities[case] = set(names)
    bad = corrupt(root / "images_structural" / cases[1] / f"{cases[1]}_T2.nii.gz")
    labels = {c: expected_counts(BRATS21_RAW, None) for c in cases}
    sites: dict[str, str | None] = {"UPENN-GBM-00002": "UPenn", "UPENN-GBM-00003": "UPenn"}
    return FakeTree("upenn_gbm", root, sites, modalities, labels, bad, cases[1])


def ucsf_pdgm(tmp: Path) -> FakeTree:
    """UCSF-PDGM-<n>_nifti folders, bias-corrected extras, a metadata CSV with 3-digit ids."""
    root = tmp / "PKG-UCSF-PDGM"
    cases = ["UCSF-PDGM-0004", "UCSF-PDGM-0005", "UCSF-PDGM-0515"]
    suffixes = {"t1": "T1", "t1ce": "T1c", "t2": "T2", "flair": "FLAIR", "dwi": "DWI", "adc": "ADC"}
    modalities: dict[str, set[str]] = {}
    for seed, case in enumerate(cases):
        folder = root / f"{case}_nifti"
        names = {k: v for k, v in suffixes.items() if not (case.endswith("0005") and k == "adc")}
        for suffix in [*names.values(), "T1_bias", "brain_segmentation"]:
            write_nifti(folder / f"{case}_{suffix}.nii.gz", volume(seed) * 70)
        write_nifti(folder / f"{case}_tumor_segmentation.nii.gz", label_volume(BRATS21_RAW))
        modalities[case] = set(names)
    csv = "\ufeffID,Sex,Age at MRI,WHO CNS Grade\r\nUCSF-PDGM-004,M,55,4\r\nUCSF-PDGM-005,F,40,2\r\n"
    (root / "UCSF-PDGM-metadata_v2.csv").write_bytes(csv.encode("utf-8"))
    bad = corrupt(root / "UCSF-PDGM-0515_nifti" / "UCSF-PDGM-0515_FLAIR.nii.gz")
    labels = {c: expected_counts(BRATS21_RAW, None) for c in cases}
    return FakeTree("ucsf_pdgm", root, dict.fromkeys(cases, "UCSF"), modalities, labels, bad,
                    "UCSF-PDGM-0515", run_modalities=("t1", "t1ce", "t2", "flair", "dwi", "adc"))


def ixi(tmp: Path) -> FakeTree:
    """One folder per modality archive; T2/PD on another grid than T1; DTI files ignored."""
    root = tmp / "IXI"
    subjects = {"IXI002-Guys-0828": "Guys", "IXI012-HH-1211": "HH", "IXI013-IOP-0810": "IOP"}
    modalities: dict[str, set[str]] = {}
    for seed, subject in enumerate(subjects):
        write_nifti(root / "IXI-T1" / f"{subject}-T1.nii.gz", volume(seed) * 300)
        mods = {"t1", "t2"}
        # T2 and PD: thicker voxels and a shifted origin, as separately acquired scans are.
        write_nifti(root / "IXI-T2" / f"{subject}-T2.nii.gz", volume(seed + 10, (12, 14, 10)) * 200,
                    spacing=2.6, origin=(1.0, -2.0, 0.5))
        if subject != "IXI013-IOP-0810":  # the missing modality
            write_nifti(root / "IXI-PD" / f"{subject}-PD.nii.gz", volume(seed + 20, (12, 14, 10)) * 250,
                        spacing=2.6, origin=(1.0, -2.0, 0.5))
            mods.add("pd")
        modalities[subject] = mods
    write_nifti(root / "IXI-DTI" / "IXI002-Guys-0828-DTI-00.nii.gz", volume(1) * 10)
    bad_name = write_nifti(root / "IXI-T1" / "IXI099-Guys-08-T1.nii.gz", volume(3))
    bad = corrupt(root / "IXI-T2" / "IXI012-HH-1211-T2.nii.gz")
    return FakeTree("ixi", root, dict(subjects), modalities, {}, bad, "IXI012-HH-1211",
                    run_modalities=("t1", "t2", "pd"), discovery_problems={bad_name})


def isles2022(tmp: Path) -> FakeTree:
    """BIDS sessions; FLAIR on its own grid; masks under derivatives/; JSON sidecars."""
    base = tmp / "ISLES-2022"
    modalities: dict[str, set[str]] = {}
    labels: dict[str, dict[int, int]] = {}
    for seed, subject in enumerate(["sub-strokecase0001", "sub-strokecase0002", "sub-strokecase0003"]):
        session = base / subject / "ses-0001"
        prefix = f"{subject}_ses-0001"
        write_nifti(session / "dwi" / f"{prefix}_dwi.nii.gz", volume(seed) * 400)
        write_nifti(session / "dwi" / f"{prefix}_adc.nii.gz", volume(seed + 5) * 900)
        (session / "dwi" / f"{prefix}_dwi.json").write_text("{}")
        mods = {"dwi", "adc"}
        if subject != "sub-strokecase0002":
            write_nifti(session / "anat" / f"{prefix}_FLAIR.nii.gz", volume(seed + 9, (20, 22, 14)) * 120,
                        spacing=1.5, origin=(-2.0, 1.0, 3.0))
            mods.add("flair")
        mask = base / "derivatives" / subject / "ses-0001" / f"{prefix}_msk.nii.gz"
        write_nifti(mask, label_volume((1, 1)))
        modalities[f"{prefix}"] = mods
        labels[prefix] = {1: 35}
    (base / "dataset_description.json").write_text('{"Name": "ISLES 2022"}')
    bad = corrupt(base / "sub-strokecase0003" / "ses-0001" / "dwi" / "sub-strokecase0003_ses-0001_adc.nii.gz")
    sites = dict.fromkeys(["sub-strokecase0001", "sub-strokecase0002", "sub-strokecase0003"])
    return FakeTree("isles2022", tmp, sites, modalities, labels, bad, "sub-strokecase0003_ses-0001",
                    run_modalities=("dwi", "adc", "flair"))


def _write_dicom_series(folder: Path, array: np.ndarray, *, intercept: float, spacing: float = 2.0) -> None:
    """One single-frame DICOM file per slice of ``array`` (X, Y, Z), InstanceNumber 1..Z."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k in range(array.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        ds.Rows, ds.Columns = array.shape[1], array.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k) * spacing]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [spacing, spacing]
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.PixelData = np.ascontiguousarray(array[:, :, k].T).astype(np.int16).tobytes()
        # File names sort differently from InstanceNumber on purpose (CHAOS's own names).
        ds.save_as(folder / f"i{array.shape[2] - k:04d},0000b.dcm", enforce_file_format=True)


def _write_masks(folder: Path, mask: np.ndarray) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in range(mask.shape[2]):
        plane = np.ascontiguousarray(mask[:, :, k].T).astype(np.uint8)
        Image.fromarray(plane).save(folder / f"liver_GT_{k:03d}.png")


def chaos(tmp: Path) -> FakeTree:
    """CHAOS_Train_Sets/Train_Sets: CT and MR DICOM series with PNG masks (organ grey values)."""
    base = tmp / "CHAOS_Train_Sets" / "Train_Sets"
    raw_mr = (63, 126, 189, 252)
    _write_dicom_series(base / "CT" / "1" / "DICOM_anon", volume(1) * 300, intercept=-1024)
    _write_masks(base / "CT" / "1" / "Ground", label_volume((255,)))
    dual = base / "MR" / "2" / "T1DUAL"
    _write_dicom_series(dual / "DICOM_anon" / "InPhase", volume(2) * 200, intercept=0)
    _write_dicom_series(dual / "DICOM_anon" / "OutPhase", volume(3) * 150, intercept=0)
    _write_masks(dual / "Ground", label_volume(raw_mr))
    spir = base / "MR" / "2" / "T2SPIR"
    _write_dicom_series(spir / "DICOM_anon", volume(4) * 180, intercept=0)
    _write_masks(spir / "Ground", label_volume(raw_mr))
    _write_dicom_series(base / "MR" / "3" / "T2SPIR" / "DICOM_anon", volume(5) * 180, intercept=0)
    (base / "MR" / "3" / "T1DUAL").mkdir(parents=True)  # T1DUAL present but without a series
    _write_dicom_series(base / "CT" / "5" / "DICOM_anon", volume(6) * 300, intercept=-1024)
    bad = corrupt(base / "CT" / "5" / "DICOM_anon" / "i0003,0000b.dcm")
    mr_map = {63: 1, 126: 2, 189: 3, 252: 4}
    modalities = {"CT_1": {"ct"}, "MR_2_T1DUAL": {"t1_inphase", "t1_outphase"}, "MR_2_T2SPIR": {"t2"},
                  "MR_3_T2SPIR": {"t2"}, "CT_5": {"ct"}}
    labels = {"CT_1": expected_counts((255,), {255: 1}), "MR_2_T1DUAL": expected_counts(raw_mr, mr_map),
              "MR_2_T2SPIR": expected_counts(raw_mr, mr_map)}
    sites: dict[str, str | None] = dict.fromkeys(["CT_1", "MR_2", "MR_3", "CT_5"], "DEU")
    return FakeTree("chaos", tmp / "CHAOS_Train_Sets", sites, modalities, labels, bad, "CT_5",
                    run_modalities=("t1_inphase", "t1_outphase", "t2", "ct"),
                    discovery_problems={base / "MR" / "3" / "T1DUAL" / "DICOM_anon" / "InPhase",
                                        base / "MR" / "3" / "T1DUAL" / "DICOM_anon" / "OutPhase"})


def manifest(tmp: Path) -> FakeTree:
    """manifest.csv (CRLF) with relative paths, a covariate column and a row pointing nowhere."""
    root = tmp / "mydata"
    rows = ["site,subject,modality,path,label,grade"]
    modalities: dict[str, set[str]] = {}
    for seed, (site, subject) in enumerate([("A", "p1"), ("A", "p2"), ("B", "p3")]):
        mods = ("T1", "T2", "FLAIR") if subject != "p2" else ("T1", "T2")
        for mod in mods:
            write_nifti(root / "files" / f"{subject}_{mod}.nii.gz", volume(seed) * 100)
            rows.append(f"{site},{subject},{mod},files/{subject}_{mod}.nii.gz,files/{subject}_seg.nii.gz,"
                        f"{2 + seed % 2}")
        write_nifti(root / "files" / f"{subject}_seg.nii.gz", label_volume(BRATS21_RAW))
        modalities[subject] = {m.lower() for m in mods}
    rows.append("B,p9,T1,files/p9_T1.nii.gz,,3")
    (root / "manifest.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    bad = corrupt(root / "files" / "p3_T2.nii.gz")
    labels = {s: expected_counts(BRATS21_RAW, None) for s in modalities}
    sites: dict[str, str | None] = {"p1": "A", "p2": "A", "p3": "B"}
    return FakeTree("manifest", root, sites, modalities, labels, bad, "p3",
                    run_modalities=("t1", "t2", "flair"),
                    discovery_problems={root / "files" / "p9_T1.nii.gz"})


