"""The ClientApp: what a SuperNode runs for each message of the ServerApp.

  query     -> the site's name, task, number of training examples and config fingerprint
  train     -> one schedule entry of the site's client program on its own data; the upload
  evaluate  -> the site's personalised model scored on its own eval split
Every message carries the server's fingerprint; a site whose own differs answers 'refused' with
the first differing key instead of training (the server records it and goes on without it).
Node config (flower-supernode --node-config): config, client, workdir, overrides (dotted
key=value pairs applied to the config), and nan_round (the fault
drill: the 1-based schedule entry in which this site sends a NaN update; 0 = never).
"""

from __future__ import annotations

import functools
import json
import logging

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from jaxlvlm.federated.flower import protocol as P
from jaxlvlm.federated.flower.site import Site

app = ClientApp()


@functools.lru_cache(maxsize=1)
def _site(config: str, client: str, workdir: str, overrides: str) -> Site:
    return Site(config, client, workdir, overrides)


def site_of(context: Context) -> Site:
    nc = context.node_config
    missing = [k for k in ("config", "workdir") if k not in nc]
    if missing:
        raise ValueError(
            f"SuperNode node config lacks {missing}; start it with --node-config "
            '\'config="file.py:arg" workdir="dir" client="name"\''
        )
    return _site(
        str(nc["config"]),
        str(nc.get("client", "")),
        str(nc["workdir"]),
        str(nc.get("overrides", "")),
    )


def _answer(msg: Message, site: Site, tree=None, **fields) -> Message:
    meta = P.meta_record(client=site.me.name, fingerprint=site.fingerprint, **fields)
    return Message(P.content(meta, tree), reply_to=msg)


def _refusal(msg: Message, site: Site) -> str | None:
    theirs = P.read_json_field(msg.content["meta"], "fingerprint")
    return P.refusal(f"site '{site.me.name}' ({site.workdir})", theirs, site.fingerprint)


@app.query()
def query(msg: Message, context: Context) -> Message:
    site = site_of(context)
    m = site.member
    return _answer(msg, site, task=m.task, task_id=m.task_id, num_examples=m.num_examples)


@app.train()
def train(msg: Message, context: Context) -> Message:
    site = site_of(context)
    why = _refusal(msg, site)
    if why is not None:
        logging.error("refusing the server's round: %s", why)
        return _answer(msg, site, refused=why)
    meta = msg.content["meta"]
    index, stage = int(meta["index"]), str(meta["stage"])
    nan = int(context.node_config.get("nan_round", 0)) == index + 1
    upload, stats = site.train(index, stage, P.roster_from(meta), P.tree_of(msg.content), nan)
    return _answer(msg, site, upload, index=index, stage=stage, stats=json.dumps(stats))


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    site = site_of(context)
    why = _refusal(msg, site)
    if why is not None:
        return _answer(msg, site, refused=why)
    meta = msg.content["meta"]
    score = site.evaluate(P.roster_from(meta), int(meta["index"]), P.tree_of(msg.content))
    return _answer(msg, site, score=score, task=site.me.task)
