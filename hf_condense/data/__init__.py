"""The data layer: real images from `datasets` sources, the pixel -> input-space map, augmentation, and IDC's
multi-formation encoding of stored images. Imports nothing else of hf_condense but `core`."""

from .augment import DSA, AugmentConfig
from .preprocess import PreprocessConfig, Preprocessor
from .sources import DIGITS, DatasetConfig, RealData, load_real_data

__all__ = [
    "DIGITS",
    "DSA",
    "AugmentConfig",
    "DatasetConfig",
    "PreprocessConfig",
    "Preprocessor",
    "RealData",
    "load_real_data",
]
