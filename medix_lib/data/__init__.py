"""The data stage: one row schema, an offline synthesiser from real medical sources, and hygiene checks.

- :mod:`~medix_lib.data.schema`: the row columns, validation, ``to_grpo`` (the training view of rows);
- :mod:`~medix_lib.data.ontologies`: readers of HPO, ICD-10 and the drug dictionary;
- :mod:`~medix_lib.data.text_tasks` and :mod:`~medix_lib.data.images`: question families from those sources and from
  real DICOM / fundus / microscopy pictures;
- :mod:`~medix_lib.data.synthesis`: the offline set (``synthesize``);
- :mod:`~medix_lib.data.hygiene`: duplicates and train/test leakage;
- :mod:`~medix_lib.data.card`: the data card.

The published datasets (MediX-R1's release, the benchmarks) are read by :mod:`medix_lib.benchmarks` into the same
schema.
"""

from medix_lib.data.card import data_card
from medix_lib.data.hygiene import (NEAR_DUPLICATE_BITS, assert_no_leakage, deduplicate, hamming_bits, image_dhash,
                                    leakage_report)
from medix_lib.data.images import IMAGE_SOURCES, image_sources, letterbox
from medix_lib.data.ontologies import read_hpo, read_hpo_annotations, read_icd10
from medix_lib.data.schema import (FEATURES, ROW_COLUMNS, ROW_EXTRAS, SPLITS, TASK_TYPES, DataError, encode_image,
                                   format_choices, has_image, pictures, row_pictures, to_grpo, validate_row)
from medix_lib.data.synthesis import SYNTH_SOURCES, picture_pool, synthesize
from medix_lib.data.text_tasks import TEXT_SOURCES

__all__ = ["FEATURES", "IMAGE_SOURCES", "NEAR_DUPLICATE_BITS", "ROW_COLUMNS", "ROW_EXTRAS", "SPLITS", "SYNTH_SOURCES",
           "TASK_TYPES", "TEXT_SOURCES", "DataError", "assert_no_leakage", "data_card", "deduplicate", "encode_image",
           "format_choices", "hamming_bits", "has_image", "image_dhash", "image_sources", "leakage_report", "letterbox",
           "picture_pool", "pictures", "read_hpo", "read_hpo_annotations", "read_icd10", "row_pictures", "synthesize",
           "to_grpo", "validate_row"]
