"""Configuration structures: nested dictionaries, YAML-backed dataclasses, value converters.

After the data-manipulation part of ataraxis-data-structures:

- :class:`NestedDictionary` (:mod:`.nested`): a dict of dicts read and
  written with paths such as ``'model.encoder.depth'``;
- :class:`YamlConfig` (:mod:`.yaml_config`): a dataclass base that saves
  itself to, and loads itself from, a ``.yaml`` file (atomically);
- the base converters (:mod:`.converters`): :class:`NumericConverter`,
  :class:`BooleanConverter`, :class:`NoneConverter`, :class:`StringConverter`,
  combined by the data converters (:mod:`.data_converters`)
  :class:`PythonDataConverter` and :class:`NumpyDataConverter`;
- :func:`parse_parameters` (:mod:`.parameters`): typed parameters from
  command-line ``name=value`` strings.
"""

from .converters import BooleanConverter, NoneConverter, NumericConverter, StringConverter
from .data_converters import CONVERSION_ERROR, NumpyDataConverter, PythonDataConverter
from .nested import NestedDictionary, NestedOverwriteError, NestedPathError
from .parameters import parse_parameters
from .yaml_config import YamlConfig

__all__ = [
    "CONVERSION_ERROR",
    "BooleanConverter",
    "NestedDictionary",
    "NestedOverwriteError",
    "NestedPathError",
    "NoneConverter",
    "NumericConverter",
    "NumpyDataConverter",
    "PythonDataConverter",
    "StringConverter",
    "YamlConfig",
    "parse_parameters",
]
