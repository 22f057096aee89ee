"""What every message between the Flower ServerApp and a site carries, and the config both load.

A message's RecordDict holds 'meta' (ConfigRecord: schedule index, round, stage, the config
fingerprint as JSON, the roster) and, for parameters, 'arrays' + 'layout' (jaxlvlm.federated.flower
.arrays). The fingerprint is the in-process runner's (federated.run_parts.run_fingerprint) without
what legitimately differs between sites: their own data sources and how a process runs its client.
A site whose fingerprint differs from the server's is refused, the first differing key named.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys

from flwr.app import ConfigRecord, RecordDict

from jaxlvlm.errors import ConfigError
from jaxlvlm.federated.flower.arrays import from_record, to_record
from jaxlvlm.federated.run_parts import run_fingerprint
from jaxlvlm.methods.pilot.settings import FederatedSettings
from jaxlvlm.methods.settings import settings_from
from jaxlvlm.train.fingerprint import ConfigDriftError, check_fingerprint

# Keys a site may set to its own value: its data, and how its process runs the client program.
SITE_KEYS = ("data.sources", "data.eval_sources", "method.backend", "method.fault_drill_client")


@dataclasses.dataclass(frozen=True)
class Member:
    """One site as the server knows it: a name, its task and how many training examples it has."""

    name: str
    task: str
    task_id: int
    num_examples: int


def load_config(spec: str, overrides: str = ""):
    """The ml_collections config of 'path/to/file.py[:arg]' (what --config takes), with
    ``overrides`` ('method.clients_per_task=1 seed=3': dotted keys, JSON values) applied."""
    path, _, arg = spec.partition(":")
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' does not exist; pass file.py[:arg]")
    root = os.path.dirname(os.path.dirname(path))  # configs/*.py import configs.common
    if root not in sys.path:
        sys.path.append(root)
    module_spec = importlib.util.spec_from_file_location(f"_flower_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg or None)
    for item in overrides.split():
        key, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a bare string
        try:
            config.update_from_flattened_dict({key: value})
        except (KeyError, AttributeError) as e:
            raise ConfigError(f"override '{item}': {path} has no key {key}") from e
    return config


def settings(config) -> FederatedSettings:
    s = settings_from(FederatedSettings, config.method)
    if s.approach == "centralized":
        raise ConfigError(
            "method.approach='centralized' pools all data in one place; it has no federated "
            "form. Run it with python -m jaxlvlm.main, or pick pilot, fedavg, fedprox or local."
        )
    return s


def fingerprint(config, s: FederatedSettings) -> dict:
    """{dotted key: value} every site and the server must agree on."""
    fp = run_fingerprint(config, s)
    return {
        k: v for k, v in fp.items() if not any(k == p or k.startswith(p + ".") for p in SITE_KEYS)
    }


def refusal(where: str, theirs: dict, ours: dict) -> str | None:
    """None when the fingerprints agree, else the sentence naming the first differing key."""
    try:
        check_fingerprint(where, theirs, ours)
    except ConfigDriftError as e:
        return str(e)
    return None


def meta_record(**fields) -> ConfigRecord:
    """A ConfigRecord of scalars and strings; dicts and lists travel as JSON strings."""
    return ConfigRecord(
        {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in fields.items()}
    )


def read_json_field(meta: ConfigRecord, key: str):
    return json.loads(str(meta[key]))


def roster_json(members: list[Member]) -> list:
    return [[m.name, m.task, m.task_id, m.num_examples] for m in members]


def roster_from(meta: ConfigRecord) -> list[Member]:
    return [Member(*row) for row in read_json_field(meta, "roster")]


def content(meta: ConfigRecord, tree=None) -> RecordDict:
    """The RecordDict of a message: its meta and, when given, a parameter tree."""
    records = {"meta": meta}
    if tree is not None:
        records["arrays"], records["layout"] = to_record(tree)
    return RecordDict(records)


def tree_of(records: RecordDict) -> dict:
    """The parameter tree of a message (nested dict of numpy arrays)."""
    return from_record(records["arrays"], records.get("layout"))
