"""absl flags made from the config's option definitions (kerasdistill/config.py).

Each option of `DistillConfig` and `ExperimentConfig` becomes one flag of the same
name, default, choices and help; `config_from_flags` reads them back into a config,
whose construction runs every option's check. A command adds only the flags that
are its own (`--model_dir`, `--verbose`).
"""

from __future__ import annotations

import dataclasses
import sys

from absl import flags

from kerasdistill.config import (FIELD_DEFAULT, RECIPES, DistillConfig, ExperimentConfig,
                                 json_value, options_of)
from kerasdistill.errors import DistillError


def _choice_text(value) -> str:
    """A choice as a flag spells it: flags are text, and some choices are not (jit_compile's
    True and False are --jit_compile=true / false)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _kind(field) -> str:
    """The field's type as declared ("int | None" is an int flag that may be unset)."""
    return str(field.type).split("|")[0].strip()


def _flag_default(field, info):
    default = field.default if info.flag_default is FIELD_DEFAULT else info.flag_default
    return None if default is dataclasses.MISSING else default


def define_config_flags(config_classes=(DistillConfig, ExperimentConfig), skip=(), only=None,
                        flag_values=flags.FLAGS):
    """Defines one flag per option of `config_classes` (except `skip`; only those in `only`
    when given), as flags of the calling module (so that its --helpshort lists them)."""
    caller = sys._getframe(1).f_globals.get("__name__")
    module = sys.argv[0] if caller == "__main__" else caller  # as absl names modules
    for config_class in config_classes:
        for field, info in options_of(config_class):
            if not info.flag or field.name in skip or (only is not None and
                                                       field.name not in only):
                continue
            default = _flag_default(field, info)
            name, text = field.name, info.help
            if info.choices is not None:
                flags.DEFINE_enum(name, None if default is None else _choice_text(default),
                                  [_choice_text(choice) for choice in info.choices], text,
                                  flag_values=flag_values, module_name=module)
            else:
                define = {"tuple": flags.DEFINE_list, "bool": flags.DEFINE_boolean,
                          "int": flags.DEFINE_integer, "float": flags.DEFINE_float,
                          "str": flags.DEFINE_string}[_kind(field)]
                if _kind(field) == "tuple" and default is not None:
                    default = [str(value) for value in default]
                define(name, default, text, flag_values=flag_values, module_name=module)


def _value(field, info, raw):
    if info.choices is not None and raw is not None:
        by_text = {_choice_text(choice): choice for choice in info.choices}
        if raw not in by_text:  # absl checks typed values; this catches a recipe's
            raise DistillError(f"--{field.name} must be one of {', '.join(by_text)}, "
                               f"got {raw!r}")
        return by_text[raw]
    if isinstance(raw, list):  # DEFINE_list: text items
        kind = info.item or str
        try:
            return tuple(kind(item) for item in raw)
        except ValueError:
            what = {int: "whole numbers", float: "numbers"}.get(kind, "names")
            raise DistillError(f"--{field.name} takes {what}, got {','.join(raw)}") from None
    return raw


def config_values(config_class, flag_values=flags.FLAGS, only=None) -> dict:
    """{option: value} of `config_class`'s options as the flags hold them."""
    return {field.name: _value(field, info, flag_values[field.name].value)
            for field, info in options_of(config_class)
            if info.flag and (only is None or field.name in only)}


def config_from_flags(flag_values=flags.FLAGS, **overrides) -> ExperimentConfig:
    """The ExperimentConfig the flags describe; `overrides` (e.g. the budget table's
    inner batch size and epochs) replace flag values. Raises DistillError for any bad
    value, before anything runs."""
    distill_overrides = {k: v for k, v in overrides.items()
                         if k in {f.name for f, _ in options_of(DistillConfig)}}
    run_overrides = {k: v for k, v in overrides.items() if k not in distill_overrides}
    # Every flag read (and its text parsed) before any value is checked.
    distill_values = {**config_values(DistillConfig, flag_values), **distill_overrides}
    run_values = {**config_values(ExperimentConfig, flag_values), **run_overrides}
    return ExperimentConfig(distill=DistillConfig(**distill_values), **run_values)


def apply_recipe(flag_values=flags.FLAGS) -> dict:
    """Expands --recipe (kerasdistill/config.py's RECIPES) into the flags, before anything
    reads them: each of the recipe's settings whose flag the command line did not give
    takes the recipe's value; a flag given wins. Returns what config.json records:
    {"name", "settings": {option: the value it set}, "overridden": {option: the flag's}}."""
    name = flag_values["recipe"].value
    settings, overridden = {}, {}
    for option_name, value in RECIPES[name].items():
        flag = flag_values[option_name]
        if flag.present:
            overridden[option_name] = flag.value
        else:
            # A flag holds text, as if typed: a list flag its items, an enum its choice.
            if isinstance(value, tuple):
                flag.value = [str(item) for item in value]
            elif isinstance(flag.parser, flags.EnumParser):
                flag.value = _choice_text(value)
            else:
                flag.value = value
            settings[option_name] = json_value(value)
    return {"name": name, "settings": settings, "overridden": overridden}

