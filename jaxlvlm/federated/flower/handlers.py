"""What a site answers to each message of the ServerApp (run in the warm site process, worker.py).

  query     -> the site's name, task, number of training examples and config fingerprint
  train     -> one schedule entry of the site's client program on its own data; the upload
  evaluate  -> the site's personalised model scored on its own eval split
Every message carries the server's fingerprint; a site whose own differs answers 'refused' with
the first differing key instead of training (the server records it and goes on without it).

Node config (flower-supernode --node-config): config, client, workdir, overrides (dotted key=value
pairs applied to the config), jax_cache (the persistent compilation cache; default
<workdir>/jax_cache) and nan_round (the fault drill: the 1-based schedule entry in which this site
sends a NaN update; 0 = never).
"""

from __future__ import annotations

import functools
import json
import logging

from flwr.app import ConfigRecord, RecordDict

from jaxlvlm.federated.flower import protocol as P
from jaxlvlm.federated.flower.link import site_identity
from jaxlvlm.federated.flower.site import Site

KINDS = ("query", "train", "evaluate")


@functools.lru_cache(maxsize=1)
def _site(config: str, client: str, workdir: str, overrides: str, jax_cache: str) -> Site:
    return Site(config, client, workdir, overrides, jax_cache)


def site_for(node_config: dict) -> Site:
    """The site of a node config, built once per process."""
    return _site(**site_identity(node_config))


def answer(kind: str, content: RecordDict, node_config: dict) -> RecordDict:
    """The content of the site's reply to a ``kind`` message with ``content``."""
    if kind not in KINDS:
        raise ValueError(f"message type '{kind}': a site answers only {list(KINDS)}")
    site = site_for(node_config)
    meta = content["meta"]
    if kind == "query":
        m = site.member
        return _reply(site, task=m.task, task_id=m.task_id, num_examples=m.num_examples)
    why = P.refusal(
        f"site '{site.me.name}' ({site.workdir})",
        P.read_json_field(meta, "fingerprint"),
        site.fingerprint,
    )
    if why is not None:
        logging.error("refusing the server's %s message: %s", kind, why)
        return _reply(site, refused=why)
    roster, payload, index = P.roster_from(meta), P.tree_of(content), int(meta["index"])
    if kind == "evaluate":
        return _reply(site, score=site.evaluate(roster, index, payload), task=site.me.task)
    stage = str(meta["stage"])
    nan = int(node_config.get("nan_round", 0)) == index + 1
    upload, stats = site.train(index, stage, roster, payload, nan)
    return _reply(site, upload, index=index, stage=stage, stats=json.dumps(stats))


def _reply(site: Site, tree=None, **fields) -> RecordDict:
    meta: ConfigRecord = P.meta_record(client=site.me.name, fingerprint=site.fingerprint, **fields)
    return P.content(meta, tree)
