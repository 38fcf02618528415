"""One typed config: defaults and their comments in default.yaml, user YAML / key=value / kwargs on top, validated."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Mapping

from mask_od.errors import MaskODError
from mask_od.shipped import SHIPPED

DEFAULTS_PATH = Path(__file__).with_name("default.yaml")
BACKBONES = ("mobilenet_v2_fpnlite", "resnet50_fpn")
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PATH_KEYS = ("train_records", "val_records", "label_map", "pretrained", "init_checkpoint", "output_dir")


class ConfigError(MaskODError, ValueError):
    """A config key is unknown or a value has the wrong type or range; ``keys``: the config keys it is about."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()):
        super().__init__(message)
        self.keys = keys


@dataclasses.dataclass(frozen=True)
class Config:
    """The knobs of a run; see default.yaml for the meaning and default of each."""

    train_records: str
    val_records: str
    label_map: str
    backbone: str
    image_size: int
    anchor_size: float
    anchor_aspect_ratios: str
    pretrained: str
    init_checkpoint: str
    max_detections: int
    nms_iou_threshold: float
    score_threshold: float
    class_agnostic_nms: bool
    batch_size: int
    steps: int
    time_budget_min: float
    stages: str
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    ema_decay: float
    freeze_backbone_bn: bool
    aug_hflip: bool
    aug_scale_min: float
    aug_scale_max: float
    aug_ssd_random_crop: bool
    aug_color: bool
    repeat_threshold: float
    class_weights: str
    max_boxes: int
    output_dir: str
    checkpoint_every: int
    keep_checkpoints: int
    eval_every: int
    log_every: int
    auto_intervals: bool
    seed: int
    strategy: str
    mixed_precision: bool

    def replace(self, **kwargs) -> "Config":
        return build_config(dataclasses.asdict(self), **kwargs)

    def to_yaml(self) -> str:
        """The config as YAML, each key with its comment from default.yaml."""
        comments = _default_comments()
        lines = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            val = _yaml_scalar(v)
            lines.append(f"{f.name}: {val}" + (f"  # {comments[f.name]}" if f.name in comments else ""))
        return "\n".join(lines) + "\n"

    def save(self, path: Path | str) -> Path:
        from mask_od.fileio import write_text_atomic

        return write_text_atomic(path, self.to_yaml(), overwrite=True)


def _yaml_scalar(v: Any) -> str:
    import yaml

    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _default_comments() -> dict[str, str]:
    out = {}
    for line in DEFAULTS_PATH.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^(\w+):.*?#\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def default_values() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(DEFAULTS_PATH.read_text(encoding="utf-8"))


TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on"), ("false", "no", "off")


def value_from_text(text: str, default: Any) -> Any:
    """``text`` as typed (``key=value`` on a command line, ``NAME=VALUE`` for the notebook) read as the type of
    ``default``. Outer quotes are removed. bool: true/yes/on or false/no/off, any case; int: base-10 digits (``017``,
    ``0x10``, ``1:30`` and ``1.5`` are refused, where YAML would read 15, 16 and 90); float: a finite decimal number
    (``1e-3``, ``.5``); list: words separated by commas, brackets allowed (``[]``: none); str: as typed.
    Raises ValueError saying what was expected."""
    raw = text.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    if isinstance(default, bool):
        if raw.lower() in TRUE_WORDS + FALSE_WORDS:
            return raw.lower() in TRUE_WORDS
        raise ValueError("expected true or false")
    if isinstance(default, int):
        if re.fullmatch(r"[+-]?(0|[1-9][0-9]*)", raw):
            return int(raw)
        raise ValueError("expected a whole number")
    if isinstance(default, float):
        try:
            v = float(raw)
        except ValueError:
            v = math.nan
        if math.isfinite(v) and "_" not in raw:
            return v
        raise ValueError("expected a number")
    if isinstance(default, list):
        if not raw.strip("[] "):
            return []
        items = [x.strip().strip("'\"") for x in raw.strip("[]").split(",")]
        if not all(items):
            raise ValueError("expected words separated by commas")
        return items
    return raw


def config_file_loader():
    """A YAML loader for config files: PyYAML's safe loader with numbers read as :func:`value_from_text` reads them
    (base 10: ``017``, ``0x10``, ``1_000``, ``10:00`` and ``.inf`` stay text, so a number key refuses them where YAML
    1.1 would read 15, 16, 1000, 600 and infinity) and a key given twice refused (YAML keeps the last silently)."""
    import yaml

    class ConfigFileLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep)

    number_tags = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ConfigFileLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag not in number_tags]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    ConfigFileLoader.add_implicit_resolver(number_tags[0], re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789"))
    ConfigFileLoader.add_implicit_resolver(number_tags[1], re.compile(r"^[-+]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
                                           list("-+.0123456789"))
    return ConfigFileLoader


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Check ``value`` (a config file's YAML value, or text from the command line, read by :func:`value_from_text`)
    against the default's type."""
    if isinstance(value, str) and not isinstance(default, str):
        try:
            return value_from_text(value, default)
        except ValueError as e:
            raise ConfigError(f"config key {key!r}: {e} (its default is {default!r}), got {value!r}", (key,)) from None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif isinstance(default, str):
        if value is None:
            return ""
        if isinstance(value, (str, Path)):
            return str(value)
    raise ConfigError(f"config key {key!r}: expected {type(default).__name__}, got {value!r} ({type(value).__name__})", (key,))


def image_size_problem(size: Any) -> str:
    """"" when ``size`` is a square input side a model can take (a multiple of 32, at least 64: the FPN halves it five
    times), else what is wrong with it."""
    return "" if isinstance(size, int) and size >= 64 and size % 32 == 0 else f"image_size must be a multiple of 32 >= 64, got {size}"


def _check_ranges(c: dict[str, Any]) -> None:
    def need(ok: bool, msg: str, *keys: str) -> None:
        if not ok:
            raise ConfigError(msg, keys)

    need(c["backbone"] in BACKBONES, f"backbone must be one of {BACKBONES}, got {c['backbone']!r}", "backbone")
    need(c["strategy"] in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {c['strategy']!r}", "strategy")
    need(not image_size_problem(c["image_size"]), image_size_problem(c["image_size"]), "image_size")
    for k in ("batch_size", "steps", "max_detections", "keep_checkpoints", "log_every", "checkpoint_every", "max_boxes"):
        need(c[k] >= 1, f"{k} must be >= 1, got {c[k]}", k)
    for k in ("warmup_steps", "eval_every"):
        need(c[k] >= 0, f"{k} must be >= 0, got {c[k]}", k)
    need(c["learning_rate"] > 0, f"learning_rate must be > 0, got {c['learning_rate']}", "learning_rate")
    need(c["time_budget_min"] >= 0, f"time_budget_min must be >= 0 (0 = use steps), got {c['time_budget_min']}", "time_budget_min")
    need(0 <= c["ema_decay"] < 1, f"ema_decay must lie in [0, 1) (0 = off), got {c['ema_decay']}", "ema_decay")
    need(0 <= c["repeat_threshold"] <= 1, f"repeat_threshold must lie in [0, 1] (0 = off), got {c['repeat_threshold']}",
         "repeat_threshold")
    try:
        parse_class_weights(c["class_weights"])
    except ValueError as e:
        raise ConfigError(f"config key 'class_weights': {e}", ("class_weights",)) from None
    need(c["anchor_size"] > 0, f"anchor_size must be > 0, got {c['anchor_size']}", "anchor_size")
    try:
        parse_aspect_ratios(c["anchor_aspect_ratios"])
    except ValueError as e:
        raise ConfigError(f"config key 'anchor_aspect_ratios': {e}", ("anchor_aspect_ratios",)) from None
    need(0 < c["aug_scale_min"] <= c["aug_scale_max"], f"need 0 < aug_scale_min <= aug_scale_max, got aug_scale_min "
         f"{c['aug_scale_min']} and aug_scale_max {c['aug_scale_max']}", "aug_scale_min", "aug_scale_max")
    need(0 < c["nms_iou_threshold"] <= 1, f"nms_iou_threshold must lie in (0, 1], got {c['nms_iou_threshold']}", "nms_iou_threshold")
    need(0 <= c["score_threshold"] < 1, f"score_threshold must lie in [0, 1), got {c['score_threshold']}", "score_threshold")
    need(0 <= c["seed"] < 2**32, f"seed must lie in [0, 2**32 - 1] (NumPy's and TensorFlow's seeds), got {c['seed']}", "seed")
    for k, v in c.items():  # step counts, sizes and intervals become int32 tensors
        if type(v) is int and k != "seed":
            need(v < 2**31, f"{k} must be below 2**31, got {v}", k)


def parse_aspect_ratios(text: str) -> tuple[float, ...]:
    """``"0.5,1.0,2.0"`` -> ``(0.5, 1.0, 2.0)``: anchor width / height ratios, each > 0, at least one, none twice."""
    out = []
    for item in (t.strip() for t in str(text).split(",")):
        try:
            r = float(item)
        except ValueError:
            r = float("nan")
        if not 0 < r < float("inf"):
            raise ValueError(f"expected comma-separated ratios > 0 such as 0.5,1.0,2.0, got {item!r} in {text!r}")
        if r in out:
            raise ValueError(f"ratio {r} given twice in {text!r}")
        out.append(r)
    return tuple(out)


def parse_class_weights(text: str) -> dict[str, float]:
    """``"mask_weared_incorrect:2.0,without_mask:1.5"`` -> ``{"mask_weared_incorrect": 2.0, ...}`` (weights > 0)."""
    out: dict[str, float] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, weight = item.rpartition(":")
        name = name.strip()
        try:
            w = float(weight)
        except ValueError:
            w = float("nan")
        if not sep or not name or not w > 0 or w == float("inf"):
            raise ValueError(f"expected name:weight with a weight > 0, got {item!r}")
        if name in out:
            raise ValueError(f"{name!r} given twice")
        out[name] = w
    return out


def build_config(*sources: Mapping[str, Any] | Path | str | None, **kwargs: Any) -> Config:
    """Defaults, then each source in order (a YAML file path or a dict), then ``kwargs``; validated.

    Unknown keys raise :class:`ConfigError` with the closest known key."""
    import difflib

    import yaml

    defaults = default_values()
    values = dict(defaults)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    for s in sources:
        if s is None:
            continue
        if isinstance(s, (str, Path)):
            p = Path(s)
            if not p.is_file():
                key = key_name(str(s))
                hint = f" (to set the key {key!r}, write {key}=VALUE)" if key in defaults else ""
                raise ConfigError(f"{p}: config file not found{hint}")
            try:
                data = yaml.load(p.read_text(encoding="utf-8"), Loader=config_file_loader()) or {}
            except yaml.YAMLError as e:
                where = getattr(e, "problem_mark", None)
                line = f" line {where.line + 1}" if where is not None else ""
                raise ConfigError(f"{p}:{line} not valid YAML ({getattr(e, 'problem', None) or e})") from None
            except UnicodeDecodeError as e:
                raise ConfigError(f"{p}: not UTF-8 text ({e.reason}); save it as UTF-8") from None
            if not isinstance(data, dict):
                raise ConfigError(f"{p}: a config file must be a mapping of key: value")
            layers.append((str(p), data))
        else:
            layers.append(("arguments", s))
    layers.append(("arguments", kwargs))
    origin: dict[str, str] = {}  # the config file a value came from ("arguments" for dicts and keyword arguments)

    def named(e: ConfigError) -> ConfigError:
        """``e`` prefixed with the config file(s) its keys' values came from, in the order they apply (none for
        arguments)."""
        mine = {origin[k] for k in e.keys if k in origin}
        files = list(dict.fromkeys(w for w, _ in layers if w in mine - {"arguments"}))
        also = " and the arguments" if files and "arguments" in mine else ""
        return ConfigError(f"{', '.join(files)}{also}: {e}", e.keys) if files else e

    for where, layer in layers:
        for k, v in layer.items():
            if k not in defaults:
                close = difflib.get_close_matches(k, list(defaults), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}: unknown config key {k!r}{hint}; known keys are in {DEFAULTS_PATH}")
            origin[k] = where
            try:
                values[k] = _coerce(k, v, defaults[k])
            except ConfigError as e:
                raise named(e) from None
    try:
        _check_ranges(values)
    except ConfigError as e:
        raise named(e) from None
    values["anchor_aspect_ratios"] = ",".join(map(str, parse_aspect_ratios(values["anchor_aspect_ratios"])))  # one spelling
    for k in PATH_KEYS:  # relative to the working directory of the build, saved absolute: runs work from any folder
        if values[k] and not (k == "pretrained" and values[k].lower() in ("imagenet", "none", "null", *SHIPPED)):
            values[k] = str(Path(values[k]).expanduser().absolute())
    if values["stages"].strip():
        from mask_od.schedule import parse_stages

        try:
            stages = parse_stages(values["stages"], values["image_size"], values["learning_rate"])
        except ValueError as e:
            raise named(ConfigError(f"config key 'stages': {e}", ("stages",))) from None
        final = stages[-1].image_size
        explicit = any("image_size" in layer for _, layer in layers)
        if explicit and values["image_size"] < final:
            raise named(ConfigError(f"image_size={values['image_size']} but the last stage of stages={values['stages']!r} is "
                              f"{final}: the run's image_size (evaluation, best-keeping, export) is its last stage's size "
                              "or larger; drop image_size or raise it", ("image_size", "stages"))) from None
        if not explicit:
            values["image_size"] = final
    return Config(**values)


def key_name(text: str) -> str:
    """A config key as typed on a command line (``--image-size``, `` steps``) -> its name (``image_size``, ``steps``)."""
    return text.strip().lstrip("-").replace("-", "_")


def parse_key_values(items: list[str]) -> dict[str, str]:
    """``["steps=100", "batch_size=4"]`` -> dict (values are typed later by :func:`build_config`)."""
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"expected key=value, got {it!r}")
        k, v = it.split("=", 1)
        out[key_name(k)] = v
    return out
